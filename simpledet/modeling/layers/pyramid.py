"""Layers whose parameters serve every level of a feature pyramid (SEPC, Wang et al. 2020):
a 3x3 conv shared by all levels that is deformable from a given level on, and a norm whose batch
statistics span all levels at once ("integrated BN").

SimpleDet's models/sepc/sepc_dconv.py and sepc_neck.py are the reference. Its deformable convs are
MXNet's DCNv1 (`mx.sym.contrib.DeformableConvolution`, one deformable group) with an offset conv
that has a bias; the level below `start_level` (P3 in every SimpleDet config) runs the same weights
as a plain conv, without offsets.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.modeling.layers.deform_conv import DeformConv2d


def level_conv(in_channels: int, out_channels: int, *, stride: int, deformable: bool) -> nn.Module:
    """A 3x3 conv (padding 1) with a bias, normal(0, 0.01) weights as SimpleDet's X.gauss(0.01);
    a DCNv1 whose offset conv starts at zero when `deformable`. Call it through `apply_level_conv`."""
    if deformable:
        conv: nn.Module = DeformConv2d(in_channels, out_channels, 3, stride, 1, bias=True)
    else:
        conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def apply_level_conv(conv: nn.Module, x: Tensor, level: int, start_level: int) -> Tensor:
    """`conv` on pyramid level `level` (0 = the finest): deformable only from `start_level` on,
    the plain conv with the same weights below it."""
    if isinstance(conv, DeformConv2d) and level >= start_level:
        return conv(x)
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)


def norm_across_levels(norm: nn.Module, levels: list[Tensor]) -> list[Tensor]:
    """One norm over all levels together: every level flattened to (N, C, 1, H*W) and joined along
    the last axis, normalised, split back. In training a BatchNorm's statistics then count each
    position of each level once (SEPC's integrated BN); in evaluation it is the same per-channel
    affine map on every level. SimpleDet splits by sizes fixed from its padded canvas (800x1333),
    which only its one input size satisfies; the sizes here are the levels' own, so any input works."""
    n, c = levels[0].shape[:2]
    joined = torch.cat([x.reshape(n, c, 1, -1) for x in levels], dim=-1)
    parts = norm(joined).split([x.shape[-2] * x.shape[-1] for x in levels], dim=-1)
    return [part.reshape(x.shape) for part, x in zip(parts, levels)]
