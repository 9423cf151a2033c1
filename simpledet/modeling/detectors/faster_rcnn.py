"""Faster R-CNN config: the parts, and how they are joined."""

from dataclasses import dataclass, field


from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.detectors.two_stage import TwoStageDetector
from simpledet.modeling.heads.cascade_roi_heads import CascadeRoIHeadsConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.necks.reduce import ReduceNeckConfig
from simpledet.modeling.preprocess import InputConfig


@dataclass
class FasterRCNNConfig:
    """Faster R-CNN (and, with CascadeRoIHeadsConfig as roi_heads, Cascade R-CNN).

    FPN models have a neck; C4 models have none: the RPN and the RoI pooling read the backbone's
    C4 map and the RoI head is stage 5. num_classes counts foreground classes only (COCO: 80);
    background is added inside."""

    num_classes: int = 80
    input: InputConfig = field(default_factory=InputConfig)
    backbone: ResNetConfig | ResNetV2Config = field(default_factory=ResNetConfig)
    neck: FPNConfig | ReduceNeckConfig | None = field(default_factory=FPNConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig | CascadeRoIHeadsConfig = field(default_factory=RoIHeadsConfig)

    def build(self) -> TwoStageDetector:
        backbone = self.backbone.build()
        neck = self.neck.build(backbone.out_channels) if self.neck is not None else None
        if neck is None:
            channels = backbone.out_channels
        else:  # FPN: one width for every level; other necks say per feature
            channels = getattr(neck, "feature_channels", None) or {f: neck.out_channels for f in neck.out_features}
        rpn_channels = channels[self.rpn.in_features[0]]
        roi_channels = channels[self.roi_heads.in_features[0]]
        model = TwoStageDetector(
            preprocess=self.input.build(),
            backbone=backbone,
            neck=neck,
            rpn=self.rpn.build(rpn_channels),
            roi_heads=self.roi_heads.build(roi_channels, self.num_classes),
        )
        return model
