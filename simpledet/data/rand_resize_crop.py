"""Multi-scale training by random resize and crop, as SimpleDet's multiscale configs do it
(core/detection_input.py RandResize2DImageBbox, then RandCrop2DImageBbox):

1. resize: one (short, long) pair drawn uniformly from the config's lists; the image is scaled by
   min(short / its short side, long / its long side) to round(h * scale) x round(w * scale)
   (OpenCV's rounding), boxes scaled with it;
2. crop: a crop_long x crop_short window (crop_short wide for a portrait image, where h >= w), no larger
   than the image. "center" mode with boxes: the window is centred on a randomly drawn ground-truth box,
   moved by noise drawn from -10..9 rows and -30..29 columns (NumPy's randint ranges there), then
   shifted back inside the image; "random" mode, or an image without boxes: a uniformly drawn window.
   Boxes whose centre is not strictly inside the window are dropped; the others are shifted and
   clipped to it.

Boxes are continuous pixel coordinates here ([x1, x2) covers x2 - x1 pixels), SimpleDet's include
their last pixel: clipping is to [0, crop_w] instead of [0, crop_w - 1], and centres are (x1 + x2) / 2
of our coordinates. A clipped box with no area left (only a degenerate box can end so) is dropped.

The model then pads the crops of a batch and does not resize them again (`model.input.train_resize
= False`). Draws are keyed as scale_jitter.py's: a sample's draws come from a generator seeded with
its key (seed, iteration, place in the global batch), so a resumed run draws what the uninterrupted
one drew.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from simpledet.data.scale_jitter import KeyedTransform, window_boxes
from simpledet.errors import UserError

CENTER_NOISE_ROWS = (-10, 10)  # SimpleDet: np.random.randint(-10, 10)
CENTER_NOISE_COLS = (-30, 30)  # np.random.randint(-30, 30)


@dataclass
class RandResizeCropConfig:
    """SimpleDet's RandResizeParam (short_ranges, long_ranges: one pair drawn per image) and
    RandCropParam (short, long, mode)."""

    short_sides: tuple[int, ...] = (600, 800, 1000, 1200)
    long_sides: tuple[int, ...] = (2000, 2000, 2000, 2000)
    crop_short: int = 800
    crop_long: int = 1200
    mode: str = "center"  # "center" (on a random ground-truth box) or "random"

    def check(self, key: str = "data.rand_resize_crop") -> None:
        if not self.short_sides or len(self.short_sides) != len(self.long_sides):
            raise UserError(f"{key}: short_sides and long_sides need one entry each per scale, got "
                            f"{self.short_sides} and {self.long_sides}")
        if min(self.short_sides + self.long_sides) < 1 or min(self.crop_short, self.crop_long) < 1:
            raise UserError(f"{key}: sides must be positive numbers of pixels")
        if self.mode not in ("center", "random"):
            raise UserError(f"{key}.mode must be 'center' or 'random', got {self.mode!r}")


def resize_sample(image: Tensor, target: dict[str, Any], short: int, long: int) -> tuple[Tensor, dict[str, Any]]:
    """SimpleDet's Resize2DImageBbox: scale = min(short / short side, long / long side)."""
    height, width = image.shape[-2:]
    scale = min(short / min(height, width), long / max(height, width))
    new_h, new_w = round(height * scale), round(width * scale)
    if new_h < 1 or new_w < 1:
        raise UserError(f"image {target.get('image_id')}: {width}x{height} pixels scale to nothing "
                        f"(data.rand_resize_crop)")
    # bilinear without antialiasing: cv2.resize(INTER_LINEAR), as SimpleDet
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    out = dict(target, boxes=window_boxes(target["boxes"], scale, 0, 0, new_w, new_h)[0])
    if "ignore_boxes" in target:
        out["ignore_boxes"] = window_boxes(target["ignore_boxes"], scale, 0, 0, new_w, new_h)[0]
    if "masks" in target:
        out["masks"] = F.interpolate(target["masks"][None].float(), size=(new_h, new_w),
                                     mode="nearest")[0].to(target["masks"].dtype)
    return resized, out


def crop_size(height: int, width: int, crop_short: int, crop_long: int) -> tuple[int, int]:
    """(crop_h, crop_w): the long side of the window along the image's long side, no larger than it."""
    crop_w, crop_h = (crop_short, crop_long) if height >= width else (crop_long, crop_short)
    return min(crop_h, height), min(crop_w, width)


def centered_window(height: int, width: int, crop_h: int, crop_w: int, box: Tensor, noise_rows: int,
                    noise_cols: int) -> tuple[int, int]:
    """(start_y, start_x) of the window centred on `box` plus the noise, moved inside the image."""
    ctr_x, ctr_y = float(box[0] + box[2]) / 2.0, float(box[1] + box[3]) / 2.0
    start_y = int(round(ctr_y - crop_h / 2)) + noise_rows
    start_x = int(round(ctr_x - crop_w / 2)) + noise_cols
    start_y = min(max(start_y, 0), height - crop_h)
    start_x = min(max(start_x, 0), width - crop_w)
    return start_y, start_x


def crop_sample(image: Tensor, target: dict[str, Any], start_y: int, start_x: int, crop_h: int, crop_w: int
                ) -> tuple[Tensor, dict[str, Any]]:
    """The window and the boxes whose centre lies strictly inside it, shifted and clipped."""
    window = image[:, start_y:start_y + crop_h, start_x:start_x + crop_w]
    boxes = target["boxes"]
    ctr_x, ctr_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (ctr_y > start_y) & (ctr_x > start_x) & (ctr_y < start_y + crop_h) & (ctr_x < start_x + crop_w)
    moved, has_area = window_boxes(boxes, 1.0, start_x, start_y, crop_w, crop_h)
    keep = inside & has_area
    out = dict(target, boxes=moved[keep], labels=target["labels"][keep], orig_size=(int(crop_h), int(crop_w)))
    if "ignore_boxes" in target:  # regions are kept wherever some of them is in the window
        regions, kept = window_boxes(target["ignore_boxes"], 1.0, start_x, start_y, crop_w, crop_h)
        out["ignore_boxes"] = regions[kept]
    if "masks" in target:
        out["masks"] = target["masks"][keep][:, start_y:start_y + crop_h, start_x:start_x + crop_w]
    return window.contiguous(), out


def rand_resize_crop(image: Tensor, target: dict[str, Any], config: RandResizeCropConfig,
                     generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
    """One sample through both steps, every draw from `generator`."""

    def randint(low: int, high: int) -> int:  # NumPy's randint(low, high): low..high - 1
        return int(torch.randint(low, high, (), generator=generator))

    scale_id = randint(0, len(config.short_sides))
    image, target = resize_sample(image, target, config.short_sides[scale_id], config.long_sides[scale_id])
    height, width = image.shape[-2:]
    crop_h, crop_w = crop_size(height, width, config.crop_short, config.crop_long)
    boxes = target["boxes"]
    if config.mode == "center" and len(boxes) > 0:
        box = boxes[randint(0, len(boxes))]
        noise_rows, noise_cols = randint(*CENTER_NOISE_ROWS), randint(*CENTER_NOISE_COLS)
        start_y, start_x = centered_window(height, width, crop_h, crop_w, box, noise_rows, noise_cols)
    else:
        start_y, start_x = randint(0, height - crop_h + 1), randint(0, width - crop_w + 1)
    return crop_sample(image, target, start_y, start_x, crop_h, crop_w)


class RandResizeCrop(KeyedTransform):
    """`dataset[(index, key)]`: dataset[index] resized and cropped by the draws keyed by `key`."""

    def transform(self, image: Tensor, target: dict[str, Any], generator: torch.Generator
                  ) -> tuple[Tensor, dict[str, Any]]:
        return rand_resize_crop(image, target, self.config, generator)
