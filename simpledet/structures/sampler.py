"""Balanced sampling of foreground and background candidates for the training losses."""

import torch
from torch import Tensor

from simpledet.structures.matcher import BACKGROUND, FOREGROUND


class BalancedSampler:
    """Keeps at most `batch_size_per_image` candidates per image, up to `positive_fraction` of them
    foreground; the rest are filled with background (fewer if there are not enough)."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: Tensor, priority: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """labels: (B, N) in {FOREGROUND, BACKGROUND, IGNORE}; priority: (2, B, N) uniform random
        numbers in [0, 1), drawn here if not given (a CUDA graph is handed them, so that it draws
        what the eager step draws). Returns boolean (B, N) masks (foreground, background) of the
        sampled candidates.

        Both kinds are drawn at once: a random priority for every (kind, image, candidate), and
        each image keeps the highest of each kind, as many as it takes of that kind. One draw, one
        top-k and one scatter for both kinds: half the launches of drawing them in turn, which
        matters after the RPN's NMS, where a GPU step waits for the host. On the CPU the draws are
        those of drawing the foreground first, then the background."""
        kinds = torch.stack([labels == FOREGROUND, labels == BACKGROUND])  # (2, B, N)
        k = min(self.batch_size_per_image, labels.shape[1])
        if k == 0:
            return torch.zeros_like(kinds[0]), torch.zeros_like(kinds[1])
        available = kinds.sum(dim=2)  # (2, B)
        num_fg = available[0].clamp(max=int(self.batch_size_per_image * self.positive_fraction))
        num_bg = torch.minimum(available[1], self.batch_size_per_image - num_fg)
        if priority is None:
            priority = torch.rand(kinds.shape, device=labels.device)
        priority = priority.masked_fill(~kinds, -1.0)
        values, index = priority.topk(k, dim=2)  # sorted: the first `count` are the highest
        wanted = torch.stack([num_fg, num_bg])[..., None]
        chosen = (torch.arange(k, device=labels.device) < wanted) & (values >= 0)
        picked = torch.zeros_like(kinds).scatter_(2, index, chosen)
        return picked[0], picked[1]
