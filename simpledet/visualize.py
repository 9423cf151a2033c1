"""Draw detections onto images and save them, for demos and eyeballing results."""

from __future__ import annotations

import zlib
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from simpledet.errors import UserError
from simpledet.files import atomic_write

# Well-separated, saturated colours that read on most photos.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 255, 255),
)  # fmt: skip


def label_color(name: str) -> tuple[int, int, int]:
    """Same colour for a class name in every run: crc32, unlike hash(), ignores PYTHONHASHSEED."""
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


def _to_uint8_rgb(image: Tensor) -> Tensor:
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a CHW image with 1 or 3 channels, got shape {tuple(image.shape)}")
    image = image.detach().cpu()
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise ValueError(f"image must be float in [0, 1] or uint8, got {image.dtype}")
    # Grey images get three channels so the class colours show.
    return image.expand(3, -1, -1).clone() if image.shape[0] == 1 else image.clone()


def draw_detections(
    image: Tensor,
    boxes: Tensor,
    labels: list[str],
    scores: Tensor | None = None,
    masks: Tensor | None = None,
) -> Tensor:
    """Returns a uint8 CHW copy of `image` with masks, x1y1x2y2 boxes and 'name 0.93' captions."""
    canvas = _to_uint8_rgb(image)
    boxes = boxes.detach().cpu().float().reshape(-1, 4)
    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    if scores is not None and len(scores) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) == 0:
        return canvas  # torchvision warns on empty input; nothing to draw anyway
    colors = [label_color(name) for name in labels]
    if masks is not None:
        masks = masks.detach().cpu()
        masks = masks > 0.5 if masks.is_floating_point() else masks.bool()
        canvas = draw_segmentation_masks(canvas, masks.reshape(-1, *canvas.shape[1:]), alpha=0.5, colors=colors)
    captions = labels if scores is None else [f"{n} {s:.2f}" for n, s in zip(labels, scores.tolist())]
    return draw_bounding_boxes(canvas, boxes, labels=captions, colors=colors, width=2)


def save_image(path: str | Path, image: Tensor) -> None:
    """Writes a uint8 CHW image; the format (PNG, JPEG, ...) follows the file suffix."""
    path = Path(path)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a uint8 CHW image with 1 or 3 channels, got {image.dtype} {tuple(image.shape)}")
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise UserError(f"{path}: cannot save an image with this file extension (Pillow knows none for "
                        f"{path.suffix or 'no extension'!r})")
    array = image.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    atomic_write(path, lambda f: pil.save(f, format=image_format))
