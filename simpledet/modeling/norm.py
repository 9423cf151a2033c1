"""Normalisation layers for backbones and heads."""

import torch
from torch import Tensor, nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, never trained).

    The pretrained backbones were trained with large batches; detection batches of 2 images per
    GPU would give noisy statistics, so SimpleDet (like every R-CNN) freezes them. The formula is
    torchvision's, so results are bit-identical to its FrozenBatchNorm2d and to an eval-mode
    nn.BatchNorm2d up to rounding.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        shift = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale.to(x.dtype) + shift.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """kind: "frozen_bn" (pretrained backbones), "bn" (training from scratch), "syncbn", "gn"."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "syncbn":
        return nn.SyncBatchNorm(channels)
    if kind == "gn":
        return nn.GroupNorm(32 if channels % 32 == 0 else 8, channels)
    raise ValueError(f"unknown norm {kind!r}: use frozen_bn, bn, syncbn or gn")
