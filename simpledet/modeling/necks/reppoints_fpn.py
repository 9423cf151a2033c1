"""SimpleDet's RepPoints neck (models/RepPoints/builder.py RepPointsNeck): RetinaNet's FPN on C3-C5
with a GroupNorm after every convolution, and P6 / P7 from P5's output (P7 from relu(P6)).

The top-down path adds the normalised laterals (upsampled nearest), the 3x3 output convs are
normalised too; P6 is a stride-2 3x3 conv on the normalised P5 output, P7 one on relu(P6). Same
convolutions and names as our FPN with p6p7_from="p5", so SimpleDet's P*_lateral / P*_conv arrays
land where the FPN's do; the norms are `lateral_norms`, `output_norms`, `p6_norm`, `p7_norm`.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.necks.fpn import FPN

# mxnext's normalizer_factory("gn"): eps 1e-5 + 1e-10 (and 32 groups, the configs' norm_groups)
GN_EPS = 1e-5 + 1e-10


def check_norm(norm: str, channels: int, groups: int, key: str) -> None:
    """UserError naming the config keys (`key`.norm, `key`.norm_groups) of a norm that cannot be built."""
    if norm not in ("gn", "none"):
        raise UserError(f"{key}.norm must be 'gn' or 'none', got {norm!r}")
    if norm == "gn" and (groups < 1 or channels % groups):
        raise UserError(f"{key}.norm_groups: {channels} channels do not divide into {groups} GroupNorm groups")


def make_group_norm(norm: str, channels: int, groups: int) -> nn.Module:
    """SimpleDet's GroupNorm (norm "gn"), or nothing (norm "none", SimpleDet's "dummy")."""
    return nn.GroupNorm(groups, channels, eps=GN_EPS) if norm == "gn" else nn.Identity()


class RepPointsFPN(FPN):
    def __init__(self, in_channels: dict[str, int], *, out_channels: int, norm: str, norm_groups: int) -> None:
        super().__init__(in_channels, out_channels=out_channels, extra_p6=False, p6p7_from="p5")

        def make() -> nn.Module:
            return make_group_norm(norm, out_channels, norm_groups)
        self.lateral_norms = nn.ModuleList(make() for _ in in_channels)
        self.output_norms = nn.ModuleList(make() for _ in in_channels)
        self.p6_norm, self.p7_norm = make(), make()

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        xs = [features[name] for name in self.in_features]
        top = self.lateral_norms[-1](self.lateral_convs[-1](xs[-1]))
        outs = [self.output_norms[-1](self.output_convs[-1](top))]
        for i in range(len(xs) - 2, -1, -1):
            lateral = self.lateral_norms[i](self.lateral_convs[i](xs[i]))
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output_norms[i](self.output_convs[i](top)))
        p6 = self.p6_norm(self.p6_conv(outs[-1]))
        outs.extend([p6, self.p7_norm(self.p7_conv(F.relu(p6)))])
        return OrderedDict(zip(self.out_features, outs))


@dataclass
class RepPointsFPNConfig:
    out_channels: int = 256
    norm: str = "gn"  # "gn" (SimpleDet's RepPoints configs) or "none"
    norm_groups: int = 32

    def build(self, in_channels: dict[str, int]) -> RepPointsFPN:
        check_norm(self.norm, self.out_channels, self.norm_groups, "model.neck")
        return RepPointsFPN(in_channels, out_channels=self.out_channels, norm=self.norm, norm_groups=self.norm_groups)
