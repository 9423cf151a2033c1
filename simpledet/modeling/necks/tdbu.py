"""The top-down / bottom-up neck ("TD-BU") of SimpleDet's NAS-FPN zoo: a hand-made cell stacked
N times on the NAS-FPN stem (nasfpn.py). Top-down, P6..P3 each take their own level plus the
upsampled level above; bottom-up, P4..P7 each take the top-down node of their level plus the
max-pooled node below; every node is ReLU -> 3x3 conv -> norm. P7 has no top-down node.

SimpleDet's config (config/NASFPN/retina_r50v1b_tdbu_640_3@384_25epoch.py) builds it with
models/FPG/builder.py's PAFPNNeckP3P7, whose bottom-up path pools 3x3 with stride 2 and padding 1
(`pool_kernel=3`); models/NASFPN/builder.py's TopDownBottomUpFPNNeck, the same cell with 2x2
stride-2 pooling, is `pool_kernel=2`.
"""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.necks.nasfpn import PyramidStem, ReluConvNorm, StackedPyramid, check_pyramid_fields, upsample_to


class TDBUCell(nn.Module):
    """Nodes p6_1, p5_1, p4_1, p3_1 (top-down), then p4_2, p5_2, p6_2, p7_2 (bottom-up); P3-P7 out
    are p3_1, p4_2, p5_2, p6_2, p7_2."""

    def __init__(self, channels: int, norm: str, pool_kernel: int) -> None:
        super().__init__()
        self.pool_kernel = pool_kernel
        for name in ("p6_1", "p5_1", "p4_1", "p3_1", "p4_2", "p5_2", "p6_2", "p7_2"):
            setattr(self, name, ReluConvNorm(channels, norm))

    def down(self, x: Tensor) -> Tensor:
        k = self.pool_kernel
        return F.max_pool2d(x, k, 2, (k - 1) // 2)

    def forward(self, levels: list[Tensor]) -> list[Tensor]:
        p3, p4, p5, p6, p7 = levels
        p6_1 = self.p6_1(p6 + upsample_to(p7, p6, 2))
        p5_1 = self.p5_1(p5 + upsample_to(p6_1, p5, 2))
        p4_1 = self.p4_1(p4 + upsample_to(p5_1, p4, 2))
        p3_1 = self.p3_1(p3 + upsample_to(p4_1, p3, 2))
        p4_2 = self.p4_2(p4_1 + self.down(p3_1))
        p5_2 = self.p5_2(p5_1 + self.down(p4_2))
        p6_2 = self.p6_2(p6_1 + self.down(p5_2))
        p7_2 = self.p7_2(p7 + self.down(p6_2))
        return [p3_1, p4_2, p5_2, p6_2, p7_2]


@dataclass
class TDBUConfig:
    """num_stages cells of `channels` (SimpleDet's num_stage, dim_reduced), stem conv kernel
    (S0_kernel), norm after every cell conv, bottom-up max-pool kernel 3 (PAFPNNeckP3P7, what the
    zoo config uses) or 2 (TopDownBottomUpFPNNeck). Needs the backbone's c3, c4 and c5."""

    num_stages: int = 3
    channels: int = 384
    norm: str = "bn"
    stem_kernel: int = 1
    pool_kernel: int = 3

    def build(self, in_channels: dict[str, int]) -> StackedPyramid:
        check_pyramid_fields(self.num_stages, self.channels, self.norm, self.stem_kernel)
        if self.pool_kernel not in (2, 3):
            raise UserError(f"model.neck.pool_kernel must be 2 or 3, got {self.pool_kernel}")
        stem = PyramidStem(in_channels, self.channels, self.stem_kernel)
        cells = [TDBUCell(self.channels, self.norm, self.pool_kernel) for _ in range(self.num_stages)]
        return StackedPyramid(stem, cells, self.channels)
