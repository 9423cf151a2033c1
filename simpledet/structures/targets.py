"""Batching per-image ground truth into padded tensors, so matching runs on the whole batch."""

import torch
from torch import Tensor


def pad_boxes(boxes: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """(B, G, 4) boxes padded with zeros to the largest count G, and a (B, G) validity mask."""
    g = max((len(b) for b in boxes), default=0)
    out = torch.zeros((len(boxes), g, 4), device=device)
    valid = torch.zeros((len(boxes), g), dtype=torch.bool, device=device)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b
        valid[i, : len(b)] = True
    return out, valid


def pad_labels(labels: list[Tensor], size: int, device: torch.device) -> Tensor:
    out = torch.zeros((len(labels), size), dtype=torch.int64, device=device)
    for i, lab in enumerate(labels):
        out[i, : len(lab)] = lab
    return out
