"""The C5 head of the C4 detectors: ResNet's stage 5 run on each RoI, then global average pooling.

SimpleDet's C5-512ROI / C5-256ROI heads pool 7x7 RoIs from C4 and run stage 5 with stride 1
(Detectron pools 14x14 and strides); the parameters are the same either way. The stage is named
`layer4`, as in a ResNet checkpoint, so an ImageNet file initialises it with the backbone
(`loads_backbone_weights`).
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from simpledet.modeling.backbones.resnet import make_stage
from simpledet.modeling.backbones.resnet_v2 import make_stage_v2
from simpledet.modeling.norm import make_norm


class Res5Head(nn.Module):
    loads_backbone_weights = True

    def __init__(self, stage: nn.Sequential) -> None:
        super().__init__()
        self.layer4 = stage  # the name a ResNet checkpoint uses for stage 5
        self.output_size = stage[-1].out_channels

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
        return Res5Head(make_stage(block=self.block, in_channels=in_channels, width=self.width,
                                   num_blocks=self.num_blocks, stride=self.stride, norm=self.norm, variant=self.variant,
                                   groups=self.groups, width_per_group=self.width_per_group, dilation=self.dilation,
                                   fuse_frozen_bn=self.fuse_frozen_bn))


class Res5V2Head(nn.Module):
    """Stage 5 of a pre-activation ResNet as a RoI head, with the network's final BN + ReLU."""

    loads_backbone_weights = True

    def __init__(self, stage: nn.Sequential, final_bn: nn.Module) -> None:
        super().__init__()
        self.layer4 = stage
        self.final_bn = final_bn  # MXNet's top-level bn1, applied by SimpleDet's v2 C5 head
        self.output_size = stage[-1].conv3.out_channels

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
        stage = make_stage_v2(in_channels=in_channels, width=self.width, num_blocks=self.num_blocks, stride=self.stride,
                              norm=self.norm, dilation=self.dilation, fuse_frozen_bn=self.fuse_frozen_bn)
        return Res5V2Head(stage, make_norm(self.norm, self.width * 4))
