"""Scale-equalizing pyramid convolution (SEPC, Wang et al. 2020) as SimpleDet builds it
(models/sepc/builder.py RetinaNetNeckWithBNWithSEPC, sepc_neck.py): RetinaNet's FPN (P3-P7, P6 and
P7 from C5) with a norm on each output (models/NASFPN RetinaNetNeckWithBN), then `pconv_num`
pyramid convolutions.

A pyramid convolution (PConv) is a 3-d convolution across levels: output level l sums a 3x3 conv
of level l, a stride-2 3x3 conv of the finer level l - 1 and a 3x3 conv of the coarser level l + 1
upsampled x2 (nearest) and cropped to level l's size; the three convs are shared by every level.
Then, optionally, one BatchNorm over all levels together (integrated BN), and ReLU. With
`deformable` the three convs are DCNv1 from level `start_level` on (full SEPC); the head's two
branch convs (heads/sepc_head.py) can be deformable on their own (SEPC-lite).
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.layers.pyramid import apply_level_conv, level_conv, norm_across_levels
from simpledet.modeling.necks.fpn import FPN
from simpledet.modeling.norm import make_norm

NORMS = ("bn", "syncbn", "frozen_bn", "gn")


class PConv(nn.Module):
    """One pyramid convolution over a list of levels, finest first. Each level's size must be
    ceil(finer level's size / 2), as a ResNet's strides and RetinaNet's P6 / P7 give."""

    def __init__(self, channels: int, *, deformable: bool, start_level: int, norm: str | None) -> None:
        super().__init__()
        # SimpleDet's PConv{i}_sepc0 / sepc1 / sepc2
        self.from_coarser = level_conv(channels, channels, stride=1, deformable=deformable)
        self.same = level_conv(channels, channels, stride=1, deformable=deformable)
        self.from_finer = level_conv(channels, channels, stride=2, deformable=deformable)
        self.norm = make_norm(norm, channels) if norm is not None else None
        self.start_level = start_level

    def forward(self, levels: list[Tensor]) -> list[Tensor]:
        outs = []
        for i, x in enumerate(levels):
            # a conv's deformability is decided by the level it writes to, as in SimpleDet
            out = apply_level_conv(self.same, x, i, self.start_level)
            if i > 0:
                out = out + apply_level_conv(self.from_finer, levels[i - 1], i, self.start_level)
            if i < len(levels) - 1:
                up = F.interpolate(apply_level_conv(self.from_coarser, levels[i + 1], i, self.start_level),
                                   scale_factor=2, mode="nearest")
                out = out + up[..., : x.shape[-2], : x.shape[-1]]  # MXNet's slice_like
            outs.append(out)
        if self.norm is not None:
            outs = norm_across_levels(self.norm, outs)
        return [F.relu(out) for out in outs]  # not in place: the split levels are views


class SEPCNeck(nn.Module):
    """FPN -> a norm per output level -> pconv_num PConvs. pconv_num 0 is SimpleDet's RetinaNet
    baseline of the SEPC folder (the FPN with BN)."""

    def __init__(self, in_channels: dict[str, int], *, out_channels: int, fpn_norm: str | None, pconv_num: int,
                 deformable: bool, integrated_norm: str | None, start_level: int) -> None:
        super().__init__()
        self.fpn = FPN(in_channels, out_channels=out_channels, extra_p6=False, p6p7_from="c5")
        num_levels = len(self.fpn.out_features)
        # SimpleDet's P{n}_conv_bn: after the output convs (P7 is computed from P6 before its norm)
        self.fpn_norms = nn.ModuleList(make_norm(fpn_norm, out_channels) for _ in range(num_levels)) \
            if fpn_norm is not None else None
        self.pconvs = nn.ModuleList(PConv(out_channels, deformable=deformable, start_level=start_level,
                                          norm=integrated_norm) for _ in range(pconv_num))

    def output_shape(self) -> dict[str, int]:
        return self.fpn.output_shape()

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        pyramid = self.fpn(features)
        levels = list(pyramid.values())
        if self.fpn_norms is not None:
            levels = [norm(x) for norm, x in zip(self.fpn_norms, levels)]
        for pconv in self.pconvs:
            levels = pconv(levels)
        return OrderedDict(zip(pyramid.keys(), levels))


def check_norm(key: str, value: str | None) -> None:
    if value is not None and value not in NORMS:
        raise UserError(f"{key} must be one of {', '.join(NORMS)} or None, got {value!r}")


def check_start_level(key: str, value: int, num_levels: int) -> None:
    if not 0 <= value <= num_levels:
        raise UserError(f"{key} must be between 0 and {num_levels} (the number of pyramid levels), got {value}")


@dataclass
class SEPCNeckConfig:
    """SimpleDet's SEPCParam (config/sepc/*): 256 channels, 4 PConvs, deformable from P4 on
    (start_level 1). `pconv_deform` and `integrated_norm` (iBN: "syncbn" in SimpleDet, None
    without) select the rows; `fpn_norm` is the BN on the FPN's outputs."""

    out_channels: int = 256
    fpn_norm: str | None = "syncbn"
    pconv_num: int = 4
    pconv_deform: bool = True
    integrated_norm: str | None = "syncbn"
    start_level: int = 1

    def build(self, in_channels: dict[str, int]) -> SEPCNeck:
        check_norm("model.neck.fpn_norm", self.fpn_norm)
        check_norm("model.neck.integrated_norm", self.integrated_norm)
        if self.pconv_num < 0 or self.out_channels < 1:
            raise UserError(f"model.neck.pconv_num must be >= 0 and model.neck.out_channels >= 1, got "
                            f"{self.pconv_num} and {self.out_channels}")
        check_start_level("model.neck.start_level", self.start_level, len(in_channels) + 2)
        return SEPCNeck(in_channels, out_channels=self.out_channels, fpn_norm=self.fpn_norm,
                        pconv_num=self.pconv_num, deformable=self.pconv_deform,
                        integrated_norm=self.integrated_norm, start_level=self.start_level)
