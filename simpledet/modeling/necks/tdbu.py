"""The top-down / bottom-up neck ("TD-BU") of SimpleDet's NAS-FPN zoo: a hand-made cell stacked
N times on the NAS-FPN stem (nasfpn.py). Top-down, P6..P3 each take their own level plus the
upsampled level above; bottom-up, P4..P7 each take the top-down node of their level plus the
max-pooled node below; every node is ReLU -> 3x3 conv -> norm. P7 has no top-down node. The cell
is the PAFPN's round (pafpn.py's TopDownBottomUp) on P3-P7, as SimpleDet builds both.

SimpleDet's config (config/NASFPN/retina_r50v1b_tdbu_640_3@384_25epoch.py) builds it with
models/FPG/builder.py's PAFPNNeckP3P7, whose bottom-up path pools 3x3 with stride 2 and padding 1
(`pool_kernel=3`); models/NASFPN/builder.py's TopDownBottomUpFPNNeck, the same cell with 2x2
stride-2 pooling, is `pool_kernel=2`.
"""

from dataclasses import dataclass

from simpledet.errors import UserError
from simpledet.modeling.necks.nasfpn import LEVELS, PyramidStem, StackedPyramid, check_pyramid_fields
from simpledet.modeling.necks.pafpn import TopDownBottomUp


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
        levels = tuple(f"p{level}" for level in LEVELS)
        cells = [TopDownBottomUp(self.channels, norm=self.norm, levels=levels, pool_kernel=self.pool_kernel)
                 for _ in range(self.num_stages)]
        return StackedPyramid(stem, cells, self.channels)
