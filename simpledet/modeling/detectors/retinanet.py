"""RetinaNet config: the parts, and how they are joined."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.detector import DetectorConfig
from simpledet.modeling.detectors.one_stage import OneStageDetector
from simpledet.modeling.heads.retina_head import RetinaHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig


@dataclass
class RetinaNetConfig(DetectorConfig):
    """Defaults are SimpleDet's RetinaNet: C3-C5 into an FPN whose P6 and P7 come from C5, and the
    4-conv head on P3-P7."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: FPNConfig = field(default_factory=lambda: FPNConfig(extra_p6=False, p6p7_from="c5"))
    head: RetinaHeadConfig = field(default_factory=RetinaHeadConfig)

    @property
    def final_head(self) -> RetinaHeadConfig:
        return self.head

    def build(self) -> OneStageDetector:
        backbone = self.backbone.build()
        # the FPN takes only the stages the backbone returns (C3-C5: no P2, too many anchors)
        neck = self.neck.build(backbone.output_shape())
        channels = neck.output_shape()
        return OneStageDetector(
            preprocess=self.input.build(),
            num_classes=self.num_classes,
            backbone=backbone,
            neck=neck,
            head=self.head.build(channels[self.head.in_features[0]], self.num_classes),
        )
