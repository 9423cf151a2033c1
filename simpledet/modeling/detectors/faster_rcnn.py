"""Faster R-CNN config: the parts, and how they are joined."""

from dataclasses import dataclass, field

import torch

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.two_stage import TwoStageDetector
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import InputConfig


@dataclass
class FasterRCNNConfig:
    """num_classes counts foreground classes only (COCO: 80); background is added inside."""

    num_classes: int = 80
    input: InputConfig = field(default_factory=InputConfig)
    backbone: ResNetConfig = field(default_factory=ResNetConfig)
    neck: FPNConfig = field(default_factory=FPNConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)

    def build(self) -> TwoStageDetector:
        backbone = self.backbone.build()
        neck = self.neck.build(backbone.out_channels)
        model = TwoStageDetector(
            preprocess=self.input.build(),
            backbone=backbone,
            neck=neck,
            rpn=self.rpn.build(neck.out_channels),
            roi_heads=self.roi_heads.build(neck.out_channels, self.num_classes),
        )
        if self.input.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model
