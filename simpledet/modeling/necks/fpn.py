"""Feature Pyramid Network: lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs,
and P6 by stride-2 subsampling of P5 (for the RPN's largest anchors)."""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    def __init__(self, in_channels: dict[str, int], out_channels: int = 256, extra_p6: bool = True) -> None:
        super().__init__()
        self.in_features = list(in_channels)  # e.g. c2..c5, fine to coarse
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels.values())
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                          for _ in in_channels)
        self.extra_p6 = extra_p6
        levels = [int(name[1:]) for name in self.in_features]
        self.out_features = [f"p{lv}" for lv in levels] + ([f"p{levels[-1] + 1}"] if extra_p6 else [])
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

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
        return OrderedDict(zip(self.out_features, outs))


@dataclass
class FPNConfig:
    out_channels: int = 256
    extra_p6: bool = True

    def build(self, in_channels: dict[str, int]) -> FPN:
        return FPN(in_channels, self.out_channels, self.extra_p6)
