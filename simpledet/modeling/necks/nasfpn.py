"""NAS-FPN (Ghiasi et al., 2019) as SimpleDet builds it (models/NASFPN/builder.py): a stem of 1x1
convs on C3-C7 (C6 and C7 max-pooled from C5), then the same searched cell stacked N times at width
W, each cell taking P3-P7 and giving P3-P7.

Inside a cell every new node is ReLU -> 3x3 conv -> norm (mxnext's `reluconvbn`) on a merge of two
nodes: a sum, or SimpleDet's global-pool merge `a + b * sigmoid(global_max_pool(a))`. Features
change level by nearest upsampling or by max pooling with kernel = stride, then are cropped to
the target's size (MXNet's `slice_like`).

The stacked-cell skeleton (`StackedPyramid`, `PyramidStem`) is shared with the top-down /
bottom-up neck in tdbu.py.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.norm import make_norm

LEVELS = (3, 4, 5, 6, 7)
NORMS = ("bn", "syncbn", "frozen_bn", "gn")


def xavier_init(conv: nn.Conv2d) -> None:
    """SimpleDet's Xavier(avg, uniform, magnitude 3) = torch's xavier_uniform_; zero bias."""
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)


def crop_to(x: Tensor, ref: Tensor) -> Tensor:
    """The top-left part of x the size of ref (MXNet's slice_like on the spatial axes)."""
    return x[..., : ref.shape[-2], : ref.shape[-1]]


def upsample_to(x: Tensor, ref: Tensor, factor: int) -> Tensor:
    return crop_to(F.interpolate(x, scale_factor=factor, mode="nearest"), ref)


def pool_to(x: Tensor, ref: Tensor, factor: int) -> Tensor:
    return crop_to(F.max_pool2d(x, factor, factor), ref)


def global_pool_merge(attention: Tensor, major: Tensor) -> Tensor:
    """SimpleDet's merge_gp: attention + major * sigmoid(global max pool of attention)."""
    gate = torch.sigmoid(torch.amax(attention, dim=(-2, -1), keepdim=True))
    return attention + major * gate


class ReluConvNorm(nn.Module):
    """ReLU, 3x3 conv (with bias), then the norm: one node of a cell."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = make_norm(norm, channels)
        xavier_init(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        # every input is a merge made inside the cell, so the ReLU may overwrite it
        return self.norm(self.conv(F.relu(x, inplace=True)))


class PyramidStem(nn.Module):
    """S0: C6 = max_pool(C5, 2), C7 = max_pool(C5, 4), then a conv per level (no norm) to `channels`."""

    def __init__(self, in_channels: dict[str, int], channels: int, kernel: int) -> None:
        super().__init__()
        c3, c4, c5 = (in_channels[name] for name in ("c3", "c4", "c5"))
        self.convs = nn.ModuleList(nn.Conv2d(c, channels, kernel, padding=kernel // 2) for c in (c3, c4, c5, c5, c5))
        for conv in self.convs:
            xavier_init(conv)

    def forward(self, features: dict[str, Tensor]) -> list[Tensor]:
        c5 = features["c5"]
        inputs = (features["c3"], features["c4"], c5, F.max_pool2d(c5, 2, 2), F.max_pool2d(c5, 4, 4))
        return [conv(x) for conv, x in zip(self.convs, inputs)]


class NASFPNCell(nn.Module):
    """SimpleDet's searched cell. Node pXX_k is the k-th node made, at level XX; P3-P7 out are
    p3_3, p4_4, p5_5, p6_7, p7_6."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        for name in ("p4_1", "p4_2", "p3_3", "p4_4", "p5_5", "p7_6", "p6_7"):
            setattr(self, name, ReluConvNorm(channels, norm))

    def forward(self, levels: list[Tensor]) -> list[Tensor]:
        p3, p4, p5, p6, p7 = levels
        p4_1 = self.p4_1(global_pool_merge(upsample_to(p6, p4, 4), p4))
        p4_2 = self.p4_2(p4 + p4_1)
        p3_3 = self.p3_3(upsample_to(p4_2, p3, 2) + p3)
        p4_4 = self.p4_4(p4_2 + pool_to(p3_3, p4_2, 2))
        p5_5 = self.p5_5(global_pool_merge(pool_to(p4_4, p5, 2), pool_to(p3_3, p5, 4)) + p5)
        p7_6 = self.p7_6(global_pool_merge(pool_to(p5_5, p7, 4), pool_to(p4_2, p7, 8)) + p7)
        p6_7 = self.p6_7(global_pool_merge(upsample_to(p7_6, p6, 2), pool_to(p5_5, p6, 2)))
        return [p3_3, p4_4, p5_5, p6_7, p7_6]


class StackedPyramid(nn.Module):
    """The stem, then the cells one after another; P3-P7 of the last cell out."""

    def __init__(self, stem: PyramidStem, cells: list[nn.Module], channels: int) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.out_features = [f"p{level}" for level in LEVELS]
        self.out_channels = channels

    def output_shape(self) -> dict[str, int]:
        return {name: self.out_channels for name in self.out_features}

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        levels = self.stem(features)
        for cell in self.cells:
            levels = cell(levels)
        return OrderedDict(zip(self.out_features, levels))


def check_pyramid_fields(num_stages: int, channels: int, norm: str, stem_kernel: int) -> None:
    if num_stages < 1:
        raise UserError(f"model.neck.num_stages must be at least 1, got {num_stages}")
    if channels < 1:
        raise UserError(f"model.neck.channels must be positive, got {channels}")
    if norm not in NORMS:
        raise UserError(f"model.neck.norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if stem_kernel not in (1, 3):
        raise UserError(f"model.neck.stem_kernel must be 1 or 3, got {stem_kernel}")


@dataclass
class NASFPNConfig:
    """SimpleDet's NAS-FPN neck (NeckParam): num_stages cells (num_stage) of `channels` (dim_reduced),
    stem conv kernel (S0_kernel), norm after every cell conv ("syncbn" in the 1024 / 1280 configs,
    "bn" = SimpleDet's localbn in the 640 ones). Needs the backbone's c3, c4 and c5."""

    num_stages: int = 7
    channels: int = 256
    norm: str = "bn"
    stem_kernel: int = 1

    def build(self, in_channels: dict[str, int]) -> StackedPyramid:
        check_pyramid_fields(self.num_stages, self.channels, self.norm, self.stem_kernel)
        stem = PyramidStem(in_channels, self.channels, self.stem_kernel)
        cells = [NASFPNCell(self.channels, self.norm) for _ in range(self.num_stages)]
        return StackedPyramid(stem, cells, self.channels)
