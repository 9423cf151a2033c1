"""FCOS config: the parts, and how they are joined."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.one_stage import OneStageConfig
from simpledet.modeling.heads.fcos_head import FCOSHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig


@dataclass
class FCOSConfig(OneStageConfig):
    """Defaults are SimpleDet's FCOS (models/FCOS/builder.py): C3-C5 into an FPN whose P6 comes
    from P5 (FCOSFPNNeck; SimpleDet's RetinaNet takes C5) and P7 from relu(P6), and the FCOS head
    on P3-P7."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: FPNConfig = field(default_factory=lambda: FPNConfig(extra_p6=False, p6p7_from="p5"))
    head: FCOSHeadConfig = field(default_factory=FCOSHeadConfig)
