"""RetinaNet's FPN with a norm on every output, as SimpleDet's NAS-FPN baseline builds it
(models/NASFPN/builder.py RetinaNetNeckWithBN): the plain FPN (laterals without norm, P6 a 3x3
stride-2 conv on C5, P7 a 3x3 stride-2 conv on relu(P6)), then a norm after each of the P3-P7
convs. P7 is computed from P6 before P6's norm, as there.

Parameter names are FPN's plus `output_norms` and `p6_norm` / `p7_norm`, so SimpleDet's
`P{n}_lateral` / `P{n}_conv` map as for the plain FPN and `P{n}_conv_bn` beside them."""

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.necks.fpn import FPN
from simpledet.modeling.necks.nasfpn import NORMS, xavier_init
from simpledet.modeling.norm import make_norm


class RetinaFPNWithNorm(FPN):
    def __init__(self, in_channels: dict[str, int], *, out_channels: int, norm: str) -> None:
        super().__init__(in_channels, out_channels=out_channels, extra_p6=False, p6p7_from="c5")
        self.output_norms = nn.ModuleList(make_norm(norm, out_channels) for _ in in_channels)
        self.p6_norm = make_norm(norm, out_channels)
        self.p7_norm = make_norm(norm, out_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m)  # SimpleDet's Xavier(avg, uniform, magnitude 3) here

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        outs = super().forward(features)
        norms = [*self.output_norms, self.p6_norm, self.p7_norm]
        return OrderedDict((name, norm(x)) for norm, (name, x) in zip(norms, outs.items()))


@dataclass
class RetinaFPNWithNormConfig:
    """out_channels (SimpleDet: 256) and the norm after each output conv ("bn": SimpleDet's localbn)."""

    out_channels: int = 256
    norm: str = "bn"

    def build(self, in_channels: dict[str, int]) -> RetinaFPNWithNorm:
        if self.norm not in NORMS:
            raise UserError(f"model.neck.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        return RetinaFPNWithNorm(in_channels, out_channels=self.out_channels, norm=self.norm)
