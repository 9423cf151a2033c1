"""Feature Pyramid Network: lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs,
and extra coarse levels: P6 by stride-2 subsampling of P5 (for the RPN's largest anchors), or
RetinaNet's P6 and P7 by stride-2 3x3 convs (P7 from relu(P6))."""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    def __init__(self, in_channels: dict[str, int], *, out_channels: int, extra_p6: bool,
                 p6p7_from: str | None) -> None:
        """in_channels: the backbone's output_shape(), fine to coarse (c2..c5 or c3..c5)."""
        super().__init__()
        if p6p7_from not in (None, "c5", "p5"):
            raise ValueError(f"p6p7_from must be None, 'c5' or 'p5', got {p6p7_from!r}")
        if extra_p6 and p6p7_from is not None:
            raise ValueError("extra_p6 and p6p7_from both add a P6: choose one")
        self.in_features = list(in_channels)  # e.g. c2..c5, fine to coarse
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels.values())
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                          for _ in in_channels)
        self.extra_p6 = extra_p6
        self.p6p7_from = p6p7_from
        if p6p7_from is not None:
            # SimpleDet's RetinaNet convolves C5; torchvision's v1 (LastLevelP6P7(256, 256)) P5
            p6_in = list(in_channels.values())[-1] if p6p7_from == "c5" else out_channels
            self.p6_conv = nn.Conv2d(p6_in, out_channels, 3, 2, 1)
            self.p7_conv = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        levels = [int(name[1:]) for name in self.in_features]
        num_extra = 1 if extra_p6 else 2 if p6p7_from is not None else 0
        self.out_features = [f"p{lv}" for lv in levels] + [f"p{levels[-1] + i}" for i in range(1, num_extra + 1)]
        self.out_channels = out_channels  # of every level
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def output_shape(self) -> dict[str, int]:
        return {name: self.out_channels for name in self.out_features}

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        xs = [features[name] for name in self.in_features]
        top = self.lateral_convs[-1](xs[-1])
        outs = [self.output_convs[-1](top)]
        for i in range(len(xs) - 2, -1, -1):
            lateral = self.lateral_convs[i](xs[i])
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output_convs[i](top))
        if self.extra_p6:
            # kernel 1, stride 2: torchvision's LastLevelMaxPool, i.e. plain subsampling of P5
            outs.append(F.max_pool2d(outs[-1], 1, 2, 0))
        if self.p6p7_from is not None:
            p6 = self.p6_conv(xs[-1] if self.p6p7_from == "c5" else outs[-1])
            outs.extend([p6, self.p7_conv(F.relu(p6))])
        return OrderedDict(zip(self.out_features, outs))


@dataclass
class FPNConfig:
    out_channels: int = 256
    extra_p6: bool = True
    # RetinaNet's P6/P7 (use with extra_p6=False): "c5" as SimpleDet, "p5" as torchvision's v1
    p6p7_from: str | None = None

    def build(self, in_channels: dict[str, int]) -> FPN:
        return FPN(in_channels, out_channels=self.out_channels, extra_p6=self.extra_p6, p6p7_from=self.p6p7_from)
