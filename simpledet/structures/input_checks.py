"""The rules a detector's inputs follow, checked where they enter: every family's forward, and the
trainer on the CPU before a batch moves to the device.

Images are float tensors [3, H, W] with values in [0, 1]. In training each image has one target
dict: `boxes` float [N, 4] as finite (x1, y1, x2, y2) corners with x2 > x1 and y2 > y1, `labels`
int64 [N] in 1..num_classes (0 is the background), and `masks` [N, H, W] in the image's pixels for
a model that trains on masks. Each refusal is a TypeError (wrong type or dtype) or ValueError
(wrong shape or value) naming the image or target index, the key, the value and what was expected.

Shapes and dtypes cost nothing to check. Values (finite boxes, labels in range, pixels in [0, 1])
are reduced to one flag per device and read with one wait for the device per call; only when a
flag is set are the inputs searched for the culprit to name.
"""

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

# Pixels may stray this far outside [0, 1] (a bicubic resize overshoots) without being refused:
# the check is there to catch 0-255 images and images already normalised.
PIXEL_SLACK = 0.01


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def check_images(images: Sequence[Tensor] | Tensor) -> None:
    """Types, dtypes and shapes of a batch of images."""
    if isinstance(images, Tensor):
        if images.dim() == 3:
            raise TypeError(f"images must be a list of [3, H, W] tensors, got one tensor of shape {_shape(images)}: "
                            "pass [image]")
        if images.dim() != 4:
            raise TypeError(f"images must be a list of [3, H, W] tensors (or one [B, 3, H, W] tensor), got a tensor "
                            f"of shape {_shape(images)}")
    elif not isinstance(images, Sequence):
        raise TypeError(f"images must be a list of [3, H, W] tensors, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("images is empty: pass at least one [3, H, W] tensor")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"image {i} is a {type(image).__name__}: expected a float torch.Tensor [3, H, W] in [0, 1]")
        if not image.is_floating_point():
            raise TypeError(f"image {i} is {image.dtype}: expected float values in [0, 1] "
                            "(image.float() / 255 for 8-bit pixels)")
        if image.dim() != 3:
            raise ValueError(f"image {i} has shape {_shape(image)}: expected [3, H, W]")
        if image.shape[0] != 3:
            if image.shape[-1] in (1, 3, 4):
                hint = "channels last: expected [3, H, W] (image.permute(2, 0, 1))"
            elif image.shape[0] == 1:
                hint = "one channel: expected 3 RGB channels (image.expand(3, -1, -1) for a grey image)"
            else:
                hint = "expected 3 RGB channels, [3, H, W]"
            raise ValueError(f"image {i} has shape {_shape(image)}, {hint}")
        if image.numel() == 0:
            raise ValueError(f"image {i} is empty, shape {_shape(image)}: expected [3, H, W] with H, W > 0")


def check_targets(targets: Sequence[Mapping] | None, images: Sequence[Tensor] | Tensor, *, masks: bool) -> None:
    """Types, dtypes and shapes of the training targets of these images (one per image)."""
    if targets is None:
        raise ValueError("targets are needed in training mode: one dict with 'boxes' and 'labels' per image")
    if isinstance(targets, Mapping) or not isinstance(targets, Sequence):
        raise TypeError(f"targets must be a list of dicts, one per image, got {type(targets).__name__}")
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} image(s) but {len(targets)} target(s): training needs one target per image")
    for i, (target, image) in enumerate(zip(targets, images)):
        if not isinstance(target, Mapping):
            raise TypeError(f"target {i} is a {type(target).__name__}: expected a dict with 'boxes' and 'labels'")
        for key in ("boxes", "labels") + (("masks",) if masks else ()):
            if key not in target:
                raise ValueError(f"target {i} has no '{key}': expected " + {
                    "boxes": "'boxes', float [N, 4] (x1, y1, x2, y2)",
                    "labels": "'labels', int64 [N] in 1..num_classes",
                    "masks": "'masks', [N, H, W] in the image's pixels: this model trains on instance masks",
                }[key])
            if not isinstance(target[key], Tensor):
                raise TypeError(f"target {i}: '{key}' is a {type(target[key]).__name__}, expected a torch.Tensor")
        boxes, labels = target["boxes"], target["labels"]
        if not boxes.is_floating_point():
            raise TypeError(f"target {i}: boxes are {boxes.dtype}, expected float [N, 4] (boxes.float())")
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"target {i}: boxes have shape {_shape(boxes)}, expected [N, 4] (x1, y1, x2, y2)")
        if labels.dtype != torch.int64:
            raise TypeError(f"target {i}: labels are {labels.dtype}, expected int64 (labels.long())")
        if labels.shape != boxes.shape[:1]:
            raise ValueError(f"target {i}: labels have shape {_shape(labels)} for {len(boxes)} box(es): "
                             "expected one label per box, [N]")
        if "ignore_boxes" in target:
            ignore = target["ignore_boxes"]
            if not isinstance(ignore, Tensor) or not ignore.is_floating_point():
                raise TypeError(f"target {i}: 'ignore_boxes' is a {type(ignore).__name__}"
                                f"{f' of {ignore.dtype}' if isinstance(ignore, Tensor) else ''}, "
                                "expected a float torch.Tensor [R, 4] (x1, y1, x2, y2)")
            if ignore.dim() != 2 or ignore.shape[1] != 4:
                raise ValueError(f"target {i}: ignore_boxes have shape {_shape(ignore)}, expected [R, 4] "
                                 "(x1, y1, x2, y2)")
        if masks:
            m = target["masks"]
            expected = (len(boxes), *image.shape[-2:])
            if tuple(m.shape) != expected:
                raise ValueError(f"target {i}: masks have shape {_shape(m)}, expected [N, H, W] = "
                                 f"[{', '.join(str(s) for s in expected)}]: one mask per box, in the image's pixels")


def check_values(images: Sequence[Tensor] | Tensor, targets: Sequence[Mapping] | None, num_classes: int,
                 names: Sequence[str] | None = None) -> None:
    """Pixels in [0, 1]; boxes finite with x2 > x1 and y2 > y1; labels in 1..num_classes. Call
    after check_images / check_targets; `images` may be empty to check the targets alone, and
    `names` says where each target came from ("target i" if not given). One read of a flag per
    device; the search that names the culprit runs only when one is set."""
    flags: dict[torch.device, list[Tensor]] = {}
    for image in images:
        low, high = torch.aminmax(image)
        flags.setdefault(image.device, []).append(~((low >= -PIXEL_SLACK) & (high <= 1 + PIXEL_SLACK)))
    for target in targets or ():
        boxes, labels = target["boxes"], target["labels"]
        if len(boxes):
            flags.setdefault(boxes.device, []).append(~_good_boxes(boxes).all())
            flags.setdefault(labels.device, []).append(((labels < 1) | (labels > num_classes)).any())
    if any(bool(torch.stack(f).any()) for f in flags.values()):
        _name_bad_value(images, targets, num_classes, names)


def _good_boxes(boxes: Tensor) -> Tensor:
    """Per box: finite, with x2 > x1 and y2 > y1 (NaN compares false)."""
    return torch.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _name_bad_value(images: Sequence[Tensor] | Tensor, targets: Sequence[Mapping] | None, num_classes: int,
                    names: Sequence[str] | None) -> None:
    for i, image in enumerate(images):
        low, high = (float(v) for v in torch.aminmax(image))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"image {i} has non-finite values (NaN or inf): expected values in [0, 1]")
        if low < -PIXEL_SLACK or high > 1 + PIXEL_SLACK:
            hint = (" (for 0-255 pixels, divide by 255)" if high > 1 + PIXEL_SLACK and high <= 255 else
                    " (normalisation happens inside the model: pass unnormalised pixels)" if low < 0 else "")
            raise ValueError(f"image {i} has values in [{low:g}, {high:g}]: expected [0, 1]{hint}")
    for i, target in enumerate(targets or ()):
        where = names[i] if names is not None else f"target {i}"
        boxes, labels = target["boxes"], target["labels"]
        bad = (~_good_boxes(boxes)).nonzero().flatten().tolist()
        if bad:
            j = bad[0]
            box = boxes[j].tolist()
            if not all(math.isfinite(v) for v in box):
                raise ValueError(f"{where}: box {j} is {_numbers(box)}: expected finite (x1, y1, x2, y2)")
            raise ValueError(f"{where}: box {j} is {_numbers(box)}: expected (x1, y1, x2, y2) corners with x2 > x1 "
                             "and y2 > y1 ([x, y, w, h] boxes: torchvision.ops.box_convert(boxes, 'xywh', 'xyxy'))")
        bad = ((labels < 1) | (labels > num_classes)).nonzero().flatten().tolist()
        if bad:
            j = bad[0]
            label = int(labels[j])
            if label == 0:
                raise ValueError(f"{where}: box {j} has label 0, the background id: labels are 1..{num_classes} "
                                 "(0-based labels? add 1)")
            raise ValueError(f"{where}: box {j} has label {label}, outside 1..{num_classes} (num_classes is "
                             f"{num_classes})")
