"""Faster R-CNN config: the parts, and how they are joined."""

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from simpledet.accel.concurrent_nms import concurrent_nms
from simpledet.accel.roi_bucket import run_bucketed
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.detectors.detector import DetectorConfig
from simpledet.modeling.detectors.two_stage import TwoStageDetector
from simpledet.modeling.heads.cascade_roi_heads import CascadeRoIHeadsConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.necks.reduce import ReduceNeckConfig


@dataclass
class FasterRCNNConfig(DetectorConfig):
    """Faster R-CNN (and, with CascadeRoIHeadsConfig as roi_heads, Cascade R-CNN).

    FPN models have a neck; C4 models have none: the RPN and the RoI pooling read the backbone's
    C4 map and the RoI head is stage 5. Background is added to num_classes inside."""

    backbone: ResNetConfig | ResNetV2Config = field(default_factory=ResNetConfig)
    neck: FPNConfig | ReduceNeckConfig | None = field(default_factory=FPNConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig | CascadeRoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    detector: ClassVar[type[TwoStageDetector]] = TwoStageDetector

    @property
    def final_head(self) -> RoIHeadsConfig:
        return self.roi_heads.stage if isinstance(self.roi_heads, CascadeRoIHeadsConfig) else self.roi_heads

    def build(self) -> TwoStageDetector:
        backbone = self.backbone.build()
        neck = self.neck.build(backbone.output_shape()) if self.neck is not None else None
        channels = (neck or backbone).output_shape()
        # the RPN's NMS calls run at once (simpledet/accel)
        return self.detector(
            preprocess=self.input.build(),
            num_classes=self.num_classes,
            backbone=backbone,
            neck=neck,
            rpn=self.rpn.build(channels[self.rpn.in_features[0]], nms_each=concurrent_nms),
            roi_heads=self.build_roi_heads(channels),
        )

    def build_roi_heads(self, channels: dict[str, int]) -> nn.Module:
        # convolutional RoI heads run on RoI counts padded for cuDNN's algorithm search (simpledet/accel)
        return self.roi_heads.build(channels[self.roi_heads.in_features[0]], self.num_classes, run_head=run_bucketed)
