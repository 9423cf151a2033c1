"""Where each image of a padded batch lies, for the heads that clip, scale or drop boxes."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ImageSizes:
    """The preprocessor's account of a batch, as torchvision's ImageList keeps image_sizes.

    `limits` and `to_original` are the same numbers as device tensors, made by the preprocessor in
    one copy that does not wait for the GPU, so that a head clips or rescales every image's boxes
    in one kernel without a host-to-device copy of its own."""

    padded: tuple[int, int]  # (h, w) of the batch tensor: every image, zero-padded
    resized: list[tuple[int, int]]  # (h, w) of each image inside the padding
    original: list[tuple[int, int]]  # (h, w) of each image as it was given
    limits: Tensor  # (B, 4) float32 (w, h, w, h) of `resized`: the largest x1 y1 x2 y2
    to_original: Tensor  # (B, 4) float32 (ow / w, oh / h, ow / w, oh / h): resized to original pixels

    @classmethod
    def of(cls, padded: tuple[int, int], resized: list[tuple[int, int]], original: list[tuple[int, int]] | None = None,
           to_tensor: Callable[[list[list[float]]], Tensor] = torch.tensor) -> "ImageSizes":
        """The sizes' tensors made by `to_tensor` from rows of Python numbers (float32, on the CPU
        by default; the preprocessor copies them to the batch's device without waiting for it).
        original: the images as given (default: as resized)."""
        original = list(original if original is not None else resized)
        rows = [[w, h, w, h, ow / w, oh / h, ow / w, oh / h] for (h, w), (oh, ow) in zip(resized, original)]
        numbers = to_tensor(rows).reshape(-1, 8)
        return cls(tuple(padded), list(resized), original, numbers[:, :4], numbers[:, 4:])

    def repeat(self, times: int) -> "ImageSizes":
        """The batch `times` over, one copy after another (TridentNet's branches)."""
        return ImageSizes(self.padded, self.resized * times, self.original * times, self.limits.repeat(times, 1),
                          self.to_original.repeat(times, 1))
