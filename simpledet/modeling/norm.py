"""Normalisation layers for backbones and heads."""

import torch
import torch.nn.functional as F
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

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + shift.reshape(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor, fuse: bool) -> Tensor:
    """norm(conv(x)); with fuse and a frozen BN, one convolution with the BN folded into its weight
    and bias. Same function and gradients (the fold is recomputed from the live conv weight at
    every call), but it saves two passes over the activations, forward and backward."""
    if fuse and isinstance(norm, FrozenBatchNorm2d):
        scale, shift = norm.scale_and_shift()
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = shift if conv.bias is None else shift + conv.bias * scale
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return norm(conv(x))


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
