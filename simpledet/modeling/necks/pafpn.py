"""PAFPN stacked (SimpleDet's models/FPG PAFPNNeckP2P6): P2-P6 from 1x1 laterals on C2-C6 (C6 is a
3x3 stride-2 max pool of C5), then `num_stages` rounds of a top-down path (nearest x2 upsampling)
followed by a bottom-up path (3x3 stride-2 max pooling), each merge a sum and then ReLU -> 3x3 conv
-> norm. Also the blocks the FPG neck (fpg.py) is built from, which SimpleDet shares between the two,
and the round the TD-BU neck (tdbu.py) stacks on P3-P7."""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.norm import make_norm

LEVELS = ("p2", "p3", "p4", "p5", "p6")
NORMS = ("bn", "syncbn", "gn")


class ReLUConvNorm(nn.Module):
    """SimpleDet's reluconvbn: ReLU first (out of place: the input feeds other paths), then a
    convolution with bias, then the norm."""

    def __init__(self, channels: int, *, kernel: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, stride, kernel // 2)
        self.norm = make_norm(norm, channels)
        nn.init.xavier_uniform_(self.conv.weight)  # SimpleDet's Xavier(avg, uniform, magnitude 3)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(F.relu(x)))


def upsample2(x: Tensor) -> Tensor:
    """Nearest x2 upsampling (MXNet's UpSampling, sample_type nearest): row i reads row i // 2."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def crop_to(x: Tensor, like: Tensor) -> Tensor:
    """x cut at the bottom and right to `like`'s size (MXNet's slice_like), where `like` is odd-sized."""
    return x[..., : like.shape[-2], : like.shape[-1]]


def downsample(x: Tensor) -> Tensor:
    """3x3 stride-2 max pooling with padding 1 (mxnext's X.pool): C5 -> C6, and PAFPN's bottom-up path."""
    return F.max_pool2d(x, 3, 2, 1)


class PyramidLaterals(nn.Module):
    """The grid's first column: 1x1 (S0_kernel) convs with bias on C2..C5 and C6 = pool(C5)."""

    def __init__(self, in_channels: dict[str, int], *, channels: int, kernel: int) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"the P2-P6 grids read four backbone features (c2..c5), got {list(in_channels)}")
        self.in_features = list(in_channels)
        widths = list(in_channels.values())
        self.convs = nn.ModuleList(nn.Conv2d(c, channels, kernel, padding=kernel // 2) for c in widths + widths[-1:])
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, Tensor]) -> list[Tensor]:
        cs = [features[name] for name in self.in_features]
        cs.append(downsample(cs[-1]))
        return [conv(c) for conv, c in zip(self.convs, cs)]


def check_grid_settings(*, channels: int, num_stages: int, lateral_kernel: int, norm: str) -> None:
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if num_stages < 1:
        raise ValueError(f"num_stages must be positive, got {num_stages}")
    if lateral_kernel < 1 or lateral_kernel % 2 == 0:
        raise ValueError(f"lateral_kernel must be odd (1, 3, ...), got {lateral_kernel}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)} (the neck's BN is trained), got {norm!r}")


class TopDownBottomUp(nn.Module):
    """One top-down then bottom-up round over `levels`, finest first (SimpleDet's PAFPN stage on
    P2-P6, and on P3-P7 the TD-BU cell of its NAS-FPN zoo). top_down[pN] makes PN_1 from PN +
    upsample(P(N+1)_1) (the coarsest level's _1 is its input); bottom_up[pN] makes PN_2 from PN_1 +
    pool(P(N-1)_2) (the finest level's _2 is its _1). The pool is `pool_kernel` x `pool_kernel`,
    stride 2, padding (k - 1) // 2: 3 (mxnext's X.pool, models/FPG) or 2 (models/NASFPN's
    TopDownBottomUpFPNNeck)."""

    def __init__(self, channels: int, *, norm: str, levels: tuple[str, ...] = LEVELS, pool_kernel: int = 3) -> None:
        super().__init__()
        self.levels, self.pool_kernel = tuple(levels), pool_kernel
        self.top_down = nn.ModuleDict({lv: ReLUConvNorm(channels, kernel=3, stride=1, norm=norm) for lv in levels[:-1]})
        self.bottom_up = nn.ModuleDict({lv: ReLUConvNorm(channels, kernel=3, stride=1, norm=norm) for lv in levels[1:]})

    def down(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.pool_kernel, 2, (self.pool_kernel - 1) // 2)

    def forward(self, ps: list[Tensor]) -> list[Tensor]:
        levels = self.levels
        down = list(ps)
        for i in range(len(levels) - 2, -1, -1):
            down[i] = self.top_down[levels[i]](ps[i] + crop_to(upsample2(down[i + 1]), ps[i]))
        up = [down[0]]
        for i in range(1, len(levels)):
            up.append(self.bottom_up[levels[i]](down[i] + self.down(up[i - 1])))
        return up


class PAFPN(nn.Module):
    def __init__(self, in_channels: dict[str, int], *, channels: int, num_stages: int, lateral_kernel: int,
                 norm: str, freeze_norm_affine: bool) -> None:
        """in_channels: the backbone's output_shape() (c2..c5)."""
        super().__init__()
        check_grid_settings(channels=channels, num_stages=num_stages, lateral_kernel=lateral_kernel, norm=norm)
        self.laterals = PyramidLaterals(in_channels, channels=channels, kernel=lateral_kernel)
        self.stages = nn.ModuleList(TopDownBottomUp(channels, norm=norm) for _ in range(num_stages))
        self.out_channels = channels
        if freeze_norm_affine:
            freeze_affine(self)

    def output_shape(self) -> dict[str, int]:
        return {name: self.out_channels for name in LEVELS}

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        ps = self.laterals(features)
        for stage in self.stages:
            ps = stage(ps)
        return OrderedDict(zip(LEVELS, ps))


def freeze_affine(module: nn.Module) -> None:
    """Keep every norm's scale and shift at their values (1 and 0 when trained from scratch), as
    SimpleDet's PAFPN configs do by listing "gamma" and "beta" among the fixed parameters."""
    for m in module.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            for p in (m.weight, m.bias):
                if p is not None:
                    p.requires_grad_(False)


@dataclass
class PAFPNConfig:
    """SimpleDet's PAFPNNeckP2P6 (NeckParam): `channels` is dim_reduced, `lateral_kernel` S0_kernel.
    norm "syncbn" as SimpleDet's configs ("bn" on one process is the same), "gn" also accepted."""

    channels: int = 256
    num_stages: int = 3
    lateral_kernel: int = 1
    norm: str = "syncbn"
    freeze_norm_affine: bool = True

    def build(self, in_channels: dict[str, int]) -> PAFPN:
        try:
            return PAFPN(in_channels, channels=self.channels, num_stages=self.num_stages,
                         lateral_kernel=self.lateral_kernel, norm=self.norm, freeze_norm_affine=self.freeze_norm_affine)
        except ValueError as e:  # a config value out of range: the user's to fix
            raise UserError(f"model.neck: {e}") from None
