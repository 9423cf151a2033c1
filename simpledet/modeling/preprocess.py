"""Turns a list of images into a normalised, resized, padded batch, and maps boxes back.

This is the model's input edge, as in torchvision: users pass float CHW images in [0, 1] of any
size and get boxes in their original pixels. The arithmetic (normalise, then bilinear resize by a
recomputed scale factor, then pad to a multiple of 32) is torchvision's, so converted torchvision
models see bit-identical inputs.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.accel.sync_free import host_tensor
from simpledet.structures.image_sizes import ImageSizes

# Input normalisations of the pretrained backbones, on 0-255 RGB (pixel_scale 255) or [0, 1] RGB
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)  # GluonCV's v1b ResNets
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
MSRA_MEAN_255 = (122.7717, 115.9465, 102.9801)  # MSRA's v1 ResNets: the pixel mean, std 1
UNIT_STD = (1.0, 1.0, 1.0)
NO_MEAN = (0.0, 0.0, 0.0)  # MXNet's v2 and ResNeXt files whiten their input themselves (bn_data)
IMAGENET_MEAN_01 = (0.485, 0.456, 0.406)  # torchvision's ResNets, on [0, 1]
IMAGENET_STD_01 = (0.229, 0.224, 0.225)


class ImagePreprocessor(nn.Module):
    def __init__(self, min_size: tuple[int, ...], max_size: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float], pixel_scale: float = 1.0, bgr: bool = False,
                 size_divisible: int = 32, test_min_size: int | None = None,
                 test_max_size: int | None = None, fixed_canvas: bool = False, train_resize: bool = True) -> None:
        super().__init__()
        self.fixed_canvas = fixed_canvas
        self.train_resize = train_resize
        self.min_size = tuple(min_size)
        self.test_min_size = test_min_size if test_min_size is not None else self.min_size[-1]
        self.max_size = max_size
        self.test_max_size = test_max_size if test_max_size is not None else max_size
        self.pixel_scale = pixel_scale
        self.bgr = bgr
        self.size_divisible = size_divisible
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def normalize(self, image: Tensor) -> Tensor:
        if not image.is_floating_point():
            raise TypeError(f"images must be float tensors in [0, 1], got {image.dtype}")
        if self.pixel_scale != 1.0:
            image = image * self.pixel_scale
        if self.bgr:
            image = image.flip(0)
        mean = self.mean.to(image.dtype)
        std = self.std.to(image.dtype)
        return (image - mean[:, None, None]) / std[:, None, None]

    def _target_short_side(self) -> int:
        if not self.training or len(self.min_size) == 1:
            return self.min_size[-1] if self.training else self.test_min_size
        # multi-scale training: torch's RNG, so a resumed run draws the same sizes
        return self.min_size[int(torch.randint(len(self.min_size), ()).item())]

    def resize(self, image: Tensor, short_side: int) -> Tensor:
        h, w = image.shape[-2:]
        max_size = self.max_size if self.training else self.test_max_size
        if torch.compiler.is_compiling():
            size = traced_resize_size(image, short_side, max_size)
            return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        scale = min(short_side / min(h, w), max_size / max(h, w))
        return F.interpolate(image[None], scale_factor=scale, mode="bilinear",
                             recompute_scale_factor=True, align_corners=False)[0]

    def canvas(self, images: list[Tensor]) -> tuple[int, int]:
        """The padded batch's (h, w): the smallest multiple of size_divisible that holds every
        image or, with fixed_canvas in training, the largest size the resize rule can give in each
        image's orientation (landscape or portrait), so that every batch has one of few shapes."""
        stride = self.size_divisible
        max_h = max(img.shape[-2] for img in images)
        max_w = max(img.shape[-1] for img in images)
        if self.fixed_canvas and self.training:
            short, long = max(self.min_size), self.max_size
            landscape = [img.shape[-1] >= img.shape[-2] for img in images]
            max_h = max(max_h, max(short if wide else long for wide in landscape))
            max_w = max(max_w, max(long if wide else short for wide in landscape))
        # rounded up in integers, without a negative floor division (an exported graph's integer
        # division truncates towards zero)
        return (max_h + stride - 1) // stride * stride, (max_w + stride - 1) // stride * stride

    def pad(self, images: list[Tensor]) -> Tensor:
        max_h, max_w = self.canvas(images)
        if len(images) == 1:  # one op, which a graph traced at symbolic sizes follows without guards on them
            image = images[0]
            return F.pad(image, (0, max_w - image.shape[-1], 0, max_h - image.shape[-2]))[None]
        batch = images[0].new_zeros((len(images), images[0].shape[0], max_h, max_w))
        for i, img in enumerate(images):
            batch[i, :, : img.shape[-2], : img.shape[-1]].copy_(img)
        return batch

    def forward(self, images: list[Tensor], targets: list[dict] | None = None
                ) -> tuple[Tensor, ImageSizes, list[dict] | None]:
        """The padded batch, where each image lies in it, and the targets' boxes in its pixels."""
        short_side = self._target_short_side()
        resized, sizes, originals, new_targets = [], [], [], [] if targets is not None else None
        for i, image in enumerate(images):
            originals.append((image.shape[-2], image.shape[-1]))  # ints (symbolic in a traced graph)
            image = self.normalize(image)
            if self.train_resize or not self.training:
                image = self.resize(image, short_side)
            resized.append(image)
            sizes.append((image.shape[-2], image.shape[-1]))
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = scale_boxes(target["boxes"], originals[-1], sizes[-1])
                if "ignore_boxes" in target:
                    target["ignore_boxes"] = scale_boxes(target["ignore_boxes"], originals[-1], sizes[-1])
                new_targets.append(target)
        batch = self.pad(resized)
        # one copy for every head's clipping and rescaling, none of which then waits for the GPU
        image_sizes = ImageSizes.of(tuple(batch.shape[-2:]), sizes, originals,
                                    lambda rows: host_tensor(rows, batch.device))
        return batch, image_sizes, new_targets

    def postprocess(self, detections: list[dict], sizes: ImageSizes) -> list[dict]:
        """Boxes from the resized images' pixels to the original images'."""
        for det, size, original in zip(detections, sizes.resized, sizes.original):
            det["boxes"] = scale_boxes(det["boxes"], size, original)
        return detections


def traced_resize_size(image: Tensor, short_side: int, max_size: int) -> tuple[int, int]:
    """The (h, w) `resize` gives `image`, for a graph traced or exported at symbolic image sizes:
    the same float64 arithmetic as Python's floats, done by tensors of the graph (an exported
    graph's own size arithmetic may run in float32 and miss by a pixel), and read as sizes known
    at run time."""
    hw = torch.tensor(image.shape[-2:], dtype=torch.float64)
    scale = torch.minimum(short_side / hw.min(), max_size / hw.max())
    out_h, out_w = (hw * scale).floor().long().tolist()
    torch._check(out_h >= 1)
    torch._check(out_w >= 1)
    return out_h, out_w


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Rescale x1y1x2y2 boxes from an image of from_size (h, w) to one of to_size.

    The ratios are float32, as torchvision computes them (bit-identical boxes), but 0-d tensors on
    the CPU: a GPU kernel takes them as scalars, with no host-to-device copy."""
    ratio_h = torch.tensor(to_size[0], dtype=torch.float32) / torch.tensor(from_size[0], dtype=torch.float32)
    ratio_w = torch.tensor(to_size[1], dtype=torch.float32) / torch.tensor(from_size[1], dtype=torch.float32)
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


@dataclass
class InputConfig:
    """Resize and normalisation. mean/std are in the units of `pixel_scale` (1: images in [0, 1];
    255: the 0-255 range SimpleDet's MXNet models expect); bgr flips RGB input to BGR."""

    min_size: tuple[int, ...] = (800,)
    max_size: int = 1333
    test_min_size: int | None = None  # None: the last of min_size
    test_max_size: int | None = None  # None: max_size
    mean: tuple[float, float, float] = (122.7717, 115.9465, 102.9801)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pixel_scale: float = 255.0
    bgr: bool = False
    size_divisible: int = 32
    # pad every training batch to the largest size the resize rule allows in its orientation
    # (800x1344 or 1344x800 for COCO's 800/1333), as SimpleDet's MXNet models did: two padded
    # shapes for the whole run, which train.cuda_graphs needs, at the cost of the padding's compute
    fixed_canvas: bool = False
    # False: training images come at the model's size already (data.scale_jitter made them) and
    # are normalised and padded only; evaluation still resizes
    train_resize: bool = True

    def build(self) -> ImagePreprocessor:
        return ImagePreprocessor(self.min_size, self.max_size, self.mean, self.std, self.pixel_scale,
                                 self.bgr, self.size_divisible, self.test_min_size, self.test_max_size,
                                 self.fixed_canvas, self.train_resize)
