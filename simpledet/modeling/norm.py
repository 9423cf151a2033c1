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
        self._folded: tuple[tuple, Tensor, Tensor] | None = None

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """The per-channel y = x * scale + shift this BN computes. The buffers are frozen, so the
        pair is computed once and reused until a buffer changes (loading weights writes them in
        place, moving the module replaces them): five kernels per layer fewer at every step,
        which matters where the step is bound by kernel launches (a GPU at batch 2)."""
        if torch.compiler.is_compiling():  # a compiled graph folds it into its kernels anyway
            return self._compute_scale_and_shift()
        buffers = (self.weight, self.bias, self.running_mean, self.running_var)
        key = tuple((b.data_ptr(), b._version, b.dtype, b.device) for b in buffers)
        if self._folded is None or self._folded[0] != key:
            # plain tensors, also when first asked under inference_mode: training reuses them
            with torch.inference_mode(False), torch.no_grad():
                self._folded = (key, *self._compute_scale_and_shift())
        return self._folded[1], self._folded[2]

    def _compute_scale_and_shift(self) -> tuple[Tensor, Tensor]:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + shift.reshape(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose batch statistics cover every process of the default group (all GPUs of all
    nodes; SimpleDet synchronised within a node only). Works with any backend, gloo on the CPU
    included, where torch's nn.SyncBatchNorm refuses to run.

    In training with a process group of more than one process, the per-channel sum, sum of
    squares and count are all-reduced (one differentiable all_reduce, so the gradients flow back
    through every process's share of the statistics); otherwise it is nn.BatchNorm2d. Same
    parameters and buffers as nn.BatchNorm2d, so checkpoints move freely between the two.
    """

    def forward(self, x: Tensor) -> Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(x)
        c = x.shape[1]
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        xf = x.to(dtype)
        count = torch.full((1,), x.numel() / c, dtype=dtype, device=x.device)
        stats = torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)), count])
        stats = all_reduce(stats)  # SUM over the group; its backward all-reduces the gradients
        total_sum, total_sq, n = stats[:c], stats[c:2 * c], stats[2 * c]
        mean = total_sum / n
        var = (total_sq / n - mean * mean).clamp_min(0)  # biased, for normalising
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        scale = (var + self.eps).rsqrt()
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias
        return (xf * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)).to(x.dtype)


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor, fuse: bool, dilation: int | None = None) -> Tensor:
    """norm(conv(x)); with fuse and a frozen BN, one convolution with the BN folded into its weight
    and bias. Same function and gradients (the fold is recomputed from the live conv weight at
    every call), but it saves two passes over the activations, forward and backward.

    dilation: the conv's dilation and padding for this call instead of its own (a 3x3 conv whose
    padding equals its dilation keeps its output size at any dilation)."""
    padding, dilated = conv.padding, conv.dilation
    if dilation is not None:
        padding = dilated = (dilation, dilation)
    if fuse and isinstance(norm, FrozenBatchNorm2d):
        scale, shift = norm.scale_and_shift()
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = shift if conv.bias is None else shift + conv.bias * scale
        return F.conv2d(x, weight, bias, conv.stride, padding, dilated, conv.groups)
    if dilation is not None:
        return norm(F.conv2d(x, conv.weight, conv.bias, conv.stride, padding, dilated, conv.groups))
    return norm(conv(x))


def make_norm(kind: str, channels: int) -> nn.Module:
    """kind: "frozen_bn" (pretrained backbones), "bn" (training from scratch), "syncbn", "gn"."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "syncbn":
        return SyncBatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(32 if channels % 32 == 0 else 8, channels)
    raise ValueError(f"unknown norm {kind!r}: use frozen_bn, bn, syncbn or gn")
