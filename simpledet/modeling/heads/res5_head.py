"""The C5 head of the C4 detectors: ResNet's stage 5 run on each RoI, then global average pooling.

SimpleDet's C5-512ROI / C5-256ROI heads pool 7x7 RoIs from C4 and run stage 5 with stride 1
(Detectron pools 14x14 and strides); the parameters are the same either way.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn


class Res5Head(nn.Module):
    def __init__(self, stage: nn.Sequential, out_channels: int) -> None:
        super().__init__()
        self.layer4 = stage  # the name a ResNet checkpoint uses for stage 5
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(x).mean(dim=(2, 3))


@dataclass
class Res5HeadConfig:
    """Stage 5 of a ResNet (v1 / v1b; groups for ResNeXt), as a RoI head."""

    variant: str = "v1b"
    norm: str = "frozen_bn"
    num_blocks: int = 3
    width: int = 512
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    width_per_group: int = 64
    fuse_frozen_bn: bool = True
    block: str = "bottleneck"  # "basic" for ResNet-18/34 heads

    def build(self, in_channels: int, resolution: int) -> Res5Head:
        from simpledet.modeling.backbones.resnet import make_stage

        stage = make_stage(self.block, in_channels, self.width, self.num_blocks, self.stride, self.norm,
                           self.variant, self.groups, self.width_per_group, dilation=self.dilation,
                           fuse_frozen_bn=self.fuse_frozen_bn)
        last = stage[-1]
        out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
        return Res5Head(stage, out_channels)


class Res5V2Head(nn.Module):
    """Stage 5 of a pre-activation ResNet as a RoI head, with the network's final BN + ReLU."""

    def __init__(self, stage: nn.Sequential, final_bn: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.layer4 = stage
        self.final_bn = final_bn  # MXNet's top-level bn1, applied by SimpleDet's v2 C5 head
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.final_bn(self.layer4(x))).mean(dim=(2, 3))


@dataclass
class Res5V2HeadConfig:
    norm: str = "frozen_bn"
    num_blocks: int = 3
    width: int = 512
    stride: int = 1
    dilation: int = 1
    fuse_frozen_bn: bool = True

    def build(self, in_channels: int, resolution: int) -> Res5V2Head:
        from simpledet.modeling.backbones.resnet_v2 import make_stage_v2
        from simpledet.modeling.norm import make_norm

        stage = make_stage_v2(in_channels, self.width, self.num_blocks, self.stride, self.norm,
                              dilation=self.dilation, fuse_frozen_bn=self.fuse_frozen_bn)
        out_channels = self.width * 4
        return Res5V2Head(stage, make_norm(self.norm, out_channels), out_channels)
