"""Feature Pyramid Grids (SimpleDet's models/FPG FPGNeckP2P6; Chen et al., 2020).

A grid of `num_stages` pyramids after the first, P2-P6 each. Column 0 is 1x1 laterals on C2-C6
(C6 = 3x3 stride-2 max pool of C5). Every later column builds level i as a 3x3 conv (with bias,
no norm, no activation) over the sum of up to five pathways, each ReLU -> conv -> norm:

- same_up:      this column's level i-1, 3x3 stride 2
- across_up:    the previous column's level i-1, 3x3 stride 2
- across_same:  the previous column's level i, 1x1
- across_down:  the previous column's level i+1, nearest x2 upsampling then 3x3, cropped to level i
- across_skip:  column 0's level i, 1x1

Pathway modules are keyed by the level they read (same_up["p2"] reads P2 and feeds P3), and the
sum runs in SimpleDet's order. The neck returns the last column.
"""

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.necks.pafpn import (
    LEVELS,
    PyramidLaterals,
    ReLUConvNorm,
    check_grid_settings,
    crop_to,
    upsample2,
)


def _pathways(channels: int, levels: tuple[str, ...], *, kernel: int, stride: int, norm: str) -> nn.ModuleDict:
    return nn.ModuleDict({lv: ReLUConvNorm(channels, kernel=kernel, stride=stride, norm=norm) for lv in levels})


class FPGStage(nn.Module):
    """One column of the grid."""

    def __init__(self, channels: int, *, norm: str) -> None:
        super().__init__()
        self.same_up = _pathways(channels, LEVELS[:-1], kernel=3, stride=2, norm=norm)
        self.across_up = _pathways(channels, LEVELS[:-1], kernel=3, stride=2, norm=norm)
        self.across_same = _pathways(channels, LEVELS, kernel=1, stride=1, norm=norm)
        self.across_down = _pathways(channels, LEVELS[1:], kernel=3, stride=1, norm=norm)
        self.across_skip = _pathways(channels, LEVELS, kernel=1, stride=1, norm=norm)
        self.fuse_convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in LEVELS)
        for conv in self.fuse_convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, previous: list[Tensor], first: list[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        for i, level in enumerate(LEVELS):
            paths = []
            if i > 0:
                below = LEVELS[i - 1]
                paths.append(self.same_up[below](out[i - 1]))
                paths.append(self.across_up[below](previous[i - 1]))
            paths.append(self.across_same[level](previous[i]))
            if i + 1 < len(LEVELS):
                above = LEVELS[i + 1]
                # SimpleDet convolves the upsampled map, then crops it to the level's size
                paths.append(crop_to(self.across_down[above](upsample2(previous[i + 1])), first[i]))
            paths.append(self.across_skip[level](first[i]))
            total = paths[0]
            for path in paths[1:]:
                total = total + path
            out.append(self.fuse_convs[i](total))
        return out


class FPG(nn.Module):
    def __init__(self, in_channels: dict[str, int], *, channels: int, num_stages: int, lateral_kernel: int,
                 norm: str) -> None:
        """in_channels: the backbone's output_shape() (c2..c5)."""
        super().__init__()
        check_grid_settings(channels=channels, num_stages=num_stages, lateral_kernel=lateral_kernel, norm=norm)
        self.laterals = PyramidLaterals(in_channels, channels=channels, kernel=lateral_kernel)
        self.stages = nn.ModuleList(FPGStage(channels, norm=norm) for _ in range(num_stages))
        self.out_channels = channels

    def output_shape(self) -> dict[str, int]:
        return {name: self.out_channels for name in LEVELS}

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        first = self.laterals(features)
        column = first
        for stage in self.stages:
            column = stage(column, first)
        return OrderedDict(zip(LEVELS, column))


@dataclass
class FPGConfig:
    """SimpleDet's FPGNeckP2P6 (NeckParam): `channels` is dim_reduced, `num_stages` num_stage,
    `lateral_kernel` S0_kernel. norm "syncbn" as SimpleDet's configs ("bn" on one process is the
    same), "gn" also accepted; the norms' scale and shift are trained."""

    channels: int = 128
    num_stages: int = 6
    lateral_kernel: int = 1
    norm: str = "syncbn"

    def build(self, in_channels: dict[str, int]) -> FPG:
        try:
            return FPG(in_channels, channels=self.channels, num_stages=self.num_stages,
                       lateral_kernel=self.lateral_kernel, norm=self.norm)
        except ValueError as e:  # a config value out of range: the user's to fix
            raise UserError(f"model.neck: {e}") from None
