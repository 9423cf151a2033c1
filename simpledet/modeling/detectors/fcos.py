"""FCOS config: the parts, and how they are joined."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.detector import DetectorConfig
from simpledet.modeling.detectors.one_stage import OneStageDetector
from simpledet.modeling.heads.fcos_head import FCOSHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig


@dataclass
class FCOSConfig(DetectorConfig):
    """Defaults are SimpleDet's FCOS (models/FCOS/builder.py): C3-C5 into an FPN whose P6 comes
    from P5 (FCOSFPNNeck; SimpleDet's RetinaNet takes C5) and P7 from relu(P6), and the FCOS head
    on P3-P7."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: FPNConfig = field(default_factory=lambda: FPNConfig(extra_p6=False, p6p7_from="p5"))
    head: FCOSHeadConfig = field(default_factory=FCOSHeadConfig)

    @property
    def final_head(self) -> FCOSHeadConfig:
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
