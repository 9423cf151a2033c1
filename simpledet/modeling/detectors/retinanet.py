"""RetinaNet config: the parts, and how they are joined."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.one_stage import OneStageConfig
from simpledet.modeling.heads.retina_head import RetinaHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig


@dataclass
class RetinaNetConfig(OneStageConfig):
    """Defaults are SimpleDet's RetinaNet: C3-C5 into an FPN whose P6 and P7 come from C5, and the
    4-conv head on P3-P7."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: FPNConfig = field(default_factory=lambda: FPNConfig(extra_p6=False, p6p7_from="c5"))
    head: RetinaHeadConfig = field(default_factory=RetinaHeadConfig)
