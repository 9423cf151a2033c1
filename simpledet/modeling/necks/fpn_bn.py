"""FPN with a normalisation layer after every convolution, as SimpleDet's FPNNeck builds it when
its normalizer is a trainable BN (models/FPN/builder.py `add_norm`; the EfficientNet configs).

The norm follows each lateral 1x1 conv *before* the top-down sum, and each 3x3 output conv; P6 is
P5 subsampled by stride 2. The convs keep their biases (SimpleDet's have them, ahead of the norm),
and the names are FPN's (`lateral_convs`, `output_convs`), so SimpleDet's `P{n}_lateral` /
`P{n}_conv` map as for the plain FPN. The norms are keyed by level (`lateral_norms.p2`,
`output_norms.p2`, ...), so SimpleDet's `P{n}_lateral_bn` / `P{n}_conv_bn` map to them by name
alone, whatever level the pyramid starts at."""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.norm import make_norm

NORMS = ("bn", "syncbn", "gn")


class NormFPN(nn.Module):
    def __init__(self, in_channels: dict[str, int], *, out_channels: int, extra_p6: bool, norm: str) -> None:
        """in_channels: the backbone's output_shape(), fine to coarse (c2..c5)."""
        super().__init__()
        self.in_features = list(in_channels)
        levels = [int(name[1:]) for name in self.in_features]
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels.values())
        self.lateral_norms = nn.ModuleDict({f"p{lv}": make_norm(norm, out_channels) for lv in levels})
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.output_norms = nn.ModuleDict({f"p{lv}": make_norm(norm, out_channels) for lv in levels})
        self.extra_p6 = extra_p6
        self.out_features = [f"p{lv}" for lv in levels] + ([f"p{levels[-1] + 1}"] if extra_p6 else [])
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # SimpleDet's Xavier(in, uniform, magnitude 3): uniform with bound sqrt(3 / fan_in)
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def output_shape(self) -> dict[str, int]:
        return {name: self.out_channels for name in self.out_features}

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        xs = [features[name] for name in self.in_features]
        lateral_norms, output_norms = list(self.lateral_norms.values()), list(self.output_norms.values())
        top = lateral_norms[-1](self.lateral_convs[-1](xs[-1]))
        outs = [output_norms[-1](self.output_convs[-1](top))]
        for i in range(len(xs) - 2, -1, -1):
            lateral = lateral_norms[i](self.lateral_convs[i](xs[i]))
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, output_norms[i](self.output_convs[i](top)))
        if self.extra_p6:
            outs.append(F.max_pool2d(outs[-1], 1, 2, 0))  # SimpleDet's P6: kernel 1, stride 2
        return OrderedDict(zip(self.out_features, outs))


@dataclass
class NormFPNConfig:
    """SimpleDet's FPN neck with its normalizer: `norm` "bn" (per-GPU BN, the EfficientNet configs),
    "syncbn" or "gn"."""

    out_channels: int = 256
    extra_p6: bool = True
    norm: str = "bn"

    def build(self, in_channels: dict[str, int]) -> NormFPN:
        if self.norm not in NORMS:
            raise UserError(f"model.neck.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        return NormFPN(in_channels, out_channels=self.out_channels, extra_p6=self.extra_p6, norm=self.norm)
