"""Large-scale jitter for training, as SimpleDet's NAS-FPN configs do it (models/NASFPN/input.py
RandResizeCrop2DImageBbox): resize the image so that its longer side is `size` times a factor drawn
uniformly from [scale_min, scale_max] (truncated to whole pixels, as there), take a random
`size` x `size` window of it (offsets uniform over what the resized image has beyond the square,
zero where it has nothing), and move the boxes with it: scaled, shifted, clipped to the window.
The model then pads the result to the square (its `fixed_canvas`) and does not resize it again
(its `train_resize=False`); see the NAS-FPN configs.

Boxes with no area left after the crop are dropped (with their masks). SimpleDet keeps them as
zero-width boxes, which its "+1" box arithmetic still gives an area of one pixel row.

The draws are keyed, not taken from a shared random stream: the train loader gives every sample
of batch k a key made from (seed, k, its place in the global batch), and the sample's scale and
offsets come from a generator seeded with that key. So batch k is a pure function of (seed, k),
as without the jitter, and a resumed run draws exactly what the uninterrupted one drew."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from simpledet.errors import UserError


@dataclass
class ScaleJitterConfig:
    """size: the square side (SimpleDet's ResizeParam.short = long: 640, 1024, 1280); the image's
    longer side is scaled to size x U(scale_min, scale_max) (SimpleDet: 0.8, 1.2)."""

    size: int = 640
    scale_min: float = 0.8
    scale_max: float = 1.2

    def check(self, key: str = "data.scale_jitter") -> None:
        if self.size < 1:
            raise UserError(f"{key}.size must be a positive number of pixels, got {self.size}")
        if not 0 < self.scale_min <= self.scale_max:
            raise UserError(f"{key}: need 0 < scale_min <= scale_max, got scale_min={self.scale_min}, "
                            f"scale_max={self.scale_max}")


def jitter_sample(image: Tensor, target: dict[str, Any], size: int, scale_factor: float,
                  offset_draws: tuple[float, float]) -> tuple[Tensor, dict[str, Any]]:
    """The jittered copy of one (image, target): image (3, H, W) resized so that its longer side is
    int(scale_factor * size), then the window at offsets int(draw * spare) (y, x; spare = how far the
    resized image exceeds `size`, or 0) cut out."""
    height, width = image.shape[-2:]
    image_scale = int(scale_factor * size) / max(height, width)
    scaled_h, scaled_w = int(height * image_scale), int(width * image_scale)
    if scaled_h < 1 or scaled_w < 1:
        raise UserError(f"image {target.get('image_id')}: {width}x{height} pixels scale to nothing at "
                        f"{image_scale:.3g} (data.scale_jitter)")
    offset_y = int(max(0, scaled_h - size) * offset_draws[0])
    offset_x = int(max(0, scaled_w - size) * offset_draws[1])
    # bilinear without antialiasing: what cv2.resize(INTER_LINEAR) does in SimpleDet
    scaled = F.interpolate(image[None], size=(scaled_h, scaled_w), mode="bilinear", align_corners=False)[0]
    window = scaled[:, offset_y:offset_y + size, offset_x:offset_x + size]
    crop_h, crop_w = window.shape[-2:]

    boxes, keep = window_boxes(target["boxes"], image_scale, offset_x, offset_y, crop_w, crop_h)
    out = dict(target, boxes=boxes[keep], labels=target["labels"][keep], orig_size=(int(crop_h), int(crop_w)))
    if "ignore_boxes" in target:
        regions, kept = window_boxes(target["ignore_boxes"], image_scale, offset_x, offset_y, crop_w, crop_h)
        out["ignore_boxes"] = regions[kept]
    if "masks" in target:
        masks = F.interpolate(target["masks"][None].float(), size=(scaled_h, scaled_w), mode="nearest")[0]
        out["masks"] = masks[:, offset_y:offset_y + size, offset_x:offset_x + size].to(target["masks"].dtype)[keep]
    return window.contiguous(), out


def window_boxes(boxes: Tensor, scale: float, offset_x: int, offset_y: int, width: int, height: int
                 ) -> tuple[Tensor, Tensor]:
    """Boxes scaled, shifted by the window's offsets and clipped to its width x height, with the
    mask of those that keep an area."""
    moved = boxes * scale - torch.tensor([offset_x, offset_y, offset_x, offset_y], dtype=boxes.dtype)
    moved = torch.stack([moved[:, 0].clamp(0, width), moved[:, 1].clamp(0, height),
                         moved[:, 2].clamp(0, width), moved[:, 3].clamp(0, height)], dim=1)
    return moved, (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])


class KeyedTransform(Dataset):
    """A training dataset read with keys: `dataset[(index, key)]` is the wrapped dataset[index] put
    through `transform` with the draws of a generator seeded with `key` (see KeyedBatches)."""

    def __init__(self, dataset: Dataset, config) -> None:
        config.check()
        self.dataset = dataset
        self.config = config

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, dict[str, Any]]:
        index, key = item
        image, target = self.dataset[index]
        return self.transform(image, target, torch.Generator().manual_seed(key))

    def transform(self, image: Tensor, target: dict[str, Any], generator: torch.Generator
                  ) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError


class ScaleJitter(KeyedTransform):
    """`jittered[(index, key)]`: dataset[index] jittered by the draws keyed by `key`."""

    def transform(self, image: Tensor, target: dict[str, Any], generator: torch.Generator
                  ) -> tuple[Tensor, dict[str, Any]]:
        scale, offset_y, offset_x = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        cfg = self.config
        factor = cfg.scale_min + (cfg.scale_max - cfg.scale_min) * scale
        return jitter_sample(image, target, cfg.size, factor, (offset_y, offset_x))


class KeyedBatches:
    """A batch sampler's batches with a key beside every index: [(index, key), ...], the key a
    function of (seed, the batch's iteration, the sample's place in the global batch). The wrapped
    sampler starts at `start_iter` and gives this process's `rank` share of each global batch."""

    def __init__(self, batches: Iterable[list[int]], *, seed: int, start_iter: int, rank: int) -> None:
        self.batches = batches
        self.seed = seed
        self.start_iter = start_iter
        self.rank = rank

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration, batch in enumerate(self.batches, self.start_iter):
            first = self.rank * len(batch)
            yield [(index, sample_key(self.seed, iteration, first + i)) for i, index in enumerate(batch)]


def sample_key(seed: int, iteration: int, place: int) -> int:
    """A 63-bit seed for one sample's draws, well mixed (numpy's SeedSequence) from the three numbers."""
    return int(np.random.SeedSequence([seed, iteration, place]).generate_state(2, np.uint64)[0] >> np.uint64(1))
