"""Balanced sampling of foreground and background candidates for the training losses."""

import torch
from torch import Tensor

from simpledet.modeling.matcher import BACKGROUND, FOREGROUND


class BalancedSampler:
    """Keeps at most `batch_size_per_image` candidates per image, up to `positive_fraction` of them
    foreground; the rest are filled with background (fewer if there are not enough).

    `sample` draws the random numbers and selects; `select` is the selection alone, a pure function
    of the labels and the draws (`draw_priority`): testable by hand, and computable inside a CUDA
    graph from numbers drawn outside it."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    @staticmethod
    def draw_priority(shape: tuple[int, ...], device: torch.device) -> Tensor:
        """(2, *shape) uniform random numbers in [0, 1): a priority for every (kind, image,
        candidate), kind 0 foreground, 1 background."""
        return torch.rand((2, *shape), device=device)

    def sample(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """select(labels, draw_priority(labels.shape))."""
        return self.select(labels, self.draw_priority(tuple(labels.shape), labels.device))

    def select(self, labels: Tensor, priority: Tensor) -> tuple[Tensor, Tensor]:
        """labels: (B, N) in {FOREGROUND, BACKGROUND, IGNORE}; priority: draw_priority(labels.shape).
        Returns boolean (B, N) masks (foreground, background) of the sampled candidates.

        Both kinds are picked at once: each image keeps the highest priorities of each kind, as
        many as it takes of that kind. One top-k and one scatter for both kinds: half the launches
        of drawing them in turn, which matters after the RPN's NMS, where a GPU step waits for the
        host."""
        kinds = torch.stack([labels == FOREGROUND, labels == BACKGROUND])  # (2, B, N)
        k = min(self.batch_size_per_image, labels.shape[1])
        if k == 0:
            return torch.zeros_like(kinds[0]), torch.zeros_like(kinds[1])
        available = kinds.sum(dim=2)  # (2, B)
        num_fg = available[0].clamp(max=int(self.batch_size_per_image * self.positive_fraction))
        num_bg = torch.minimum(available[1], self.batch_size_per_image - num_fg)
        priority = priority.masked_fill(~kinds, -1.0)
        values, index = priority.topk(k, dim=2)  # sorted: the first `count` are the highest
        wanted = torch.stack([num_fg, num_bg])[..., None]
        chosen = (torch.arange(k, device=labels.device) < wanted) & (values >= 0)
        picked = torch.zeros_like(kinds).scatter_(2, index, chosen)
        return picked[0], picked[1]
