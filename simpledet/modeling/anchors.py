"""Anchor boxes: a few base shapes per feature level, repeated at every position of its grid."""

from typing import NamedTuple

import torch
from torch import Tensor


class Anchors(NamedTuple):
    """A padded batch's anchors: each level's (H_i * W_i * A_i, 4), and all of them in one tensor,
    level after level (the order of a dense head's concatenated outputs)."""

    levels: list[Tensor]
    all: Tensor

    @classmethod
    def of(cls, levels: list[Tensor]) -> "Anchors":
        return cls(levels, torch.cat(levels))


def base_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> Tensor:
    """(len(ratios) * len(sizes), 4) anchors centred on (0, 0); ratio = height / width.

    Ratio-major order and rounding to whole pixels, as torchvision (and py-faster-rcnn) do.
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator:
    """Anchors for each feature level, ordered (y, x, anchor) to match the flattened head outputs.

    sizes[i] and aspect_ratios[i] describe level i. A level's stride is the padded image size
    divided by its feature size (integer division), which is what torchvision does too.
    """

    def __init__(self, sizes: tuple[tuple[float, ...], ...],
                 aspect_ratios: tuple[tuple[float, ...], ...]) -> None:
        if len(sizes) != len(aspect_ratios):
            raise ValueError("sizes and aspect_ratios need one entry per feature level")
        self.cell_anchors = [base_anchors(s, r) for s, r in zip(sizes, aspect_ratios)]
        self._cache: dict[tuple, Anchors] = {}

    @property
    def num_anchors_per_location(self) -> list[int]:
        return [len(a) for a in self.cell_anchors]

    def __call__(self, image_size: tuple[int, int], feature_sizes: list[tuple[int, int]],
                 device: torch.device) -> Anchors:
        """The anchors of a padded batch of `image_size` (h, w), made once per size and cached
        (not in a traced graph, whose sizes are symbolic: there they are part of the graph)."""
        if torch.compiler.is_compiling():
            return Anchors.of(self._grid_anchors(image_size, feature_sizes, device))
        key = (tuple(image_size), tuple(map(tuple, feature_sizes)), str(device))
        if key not in self._cache:
            if len(self._cache) > 64:  # many input sizes (multi-scale training): keep it bounded
                self._cache.clear()
            self._cache[key] = Anchors.of(self._grid_anchors(image_size, feature_sizes, device))
        return self._cache[key]

    def _grid_anchors(self, image_size, feature_sizes, device) -> list[Tensor]:
        out = []
        for (fh, fw), cell in zip(feature_sizes, self.cell_anchors):
            stride_h = image_size[0] // fh
            stride_w = image_size[1] // fw
            shift_x = torch.arange(0, fw, dtype=torch.int32, device=device) * stride_w
            shift_y = torch.arange(0, fh, dtype=torch.int32, device=device) * stride_h
            shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            cell = cell.to(device)
            out.append((shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4))
        return out
