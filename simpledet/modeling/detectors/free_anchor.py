"""FreeAnchor config: RetinaNet's parts with FreeAnchor's head, joined the same way."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.detector import DetectorConfig
from simpledet.modeling.detectors.one_stage import OneStageDetector
from simpledet.modeling.heads.free_anchor_head import FreeAnchorHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig


@dataclass
class FreeAnchorConfig(DetectorConfig):
    """Defaults are SimpleDet's FreeAnchor: C3-C5 into an FPN whose P6 and P7 come from C5 (its
    RetinaNetNeck), and the 4-conv head on P3-P7 trained by learning to match."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: FPNConfig = field(default_factory=lambda: FPNConfig(extra_p6=False, p6p7_from="c5"))
    head: FreeAnchorHeadConfig = field(default_factory=FreeAnchorHeadConfig)

    @property
    def final_head(self) -> FreeAnchorHeadConfig:
        return self.head

    def build(self) -> OneStageDetector:
        backbone = self.backbone.build()
        neck = self.neck.build(backbone.output_shape())
        channels = neck.output_shape()
        return OneStageDetector(
            preprocess=self.input.build(),
            num_classes=self.num_classes,
            backbone=backbone,
            neck=neck,
            head=self.head.build(channels[self.head.in_features[0]], self.num_classes),
        )
