"""Balanced sampling of foreground and background candidates for the training losses."""

import torch
from torch import Tensor

from simpledet.structures.matcher import BACKGROUND, FOREGROUND


def _pick_random(mask: Tensor, count: Tensor, max_count: int) -> Tensor:
    """A random subset of `count[b]` True entries of each row of `mask` (B, N)."""
    if max_count == 0 or mask.shape[1] == 0:
        return torch.zeros_like(mask)
    priority = torch.rand(mask.shape, device=mask.device)
    priority = priority.masked_fill(~mask, -1.0)
    k = min(max_count, mask.shape[1])
    values, index = priority.topk(k, dim=1)
    chosen = (torch.arange(k, device=mask.device)[None, :] < count[:, None]) & (values >= 0)
    picked = torch.zeros_like(mask)
    picked.scatter_(1, index, chosen)
    return picked


class BalancedSampler:
    """Keeps at most `batch_size_per_image` candidates per image, up to `positive_fraction` of them
    foreground; the rest are filled with background (fewer if there are not enough)."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """labels: (B, N) in {FOREGROUND, BACKGROUND, IGNORE}. Returns boolean (B, N) masks
        (foreground, background) of the sampled candidates."""
        is_fg = labels == FOREGROUND
        is_bg = labels == BACKGROUND
        max_fg = int(self.batch_size_per_image * self.positive_fraction)
        num_fg = is_fg.sum(dim=1).clamp(max=max_fg)
        num_bg = is_bg.sum(dim=1)
        num_bg = torch.minimum(num_bg, self.batch_size_per_image - num_fg)
        fg = _pick_random(is_fg, num_fg, max_fg)
        bg = _pick_random(is_bg, num_bg, self.batch_size_per_image)
        return fg, bg
