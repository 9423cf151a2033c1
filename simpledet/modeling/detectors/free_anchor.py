"""FreeAnchor config: RetinaNet's parts with FreeAnchor's head, joined the same way."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.one_stage import OneStageConfig
from simpledet.modeling.heads.free_anchor_head import FreeAnchorHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig


@dataclass
class FreeAnchorConfig(OneStageConfig):
    """Defaults are SimpleDet's FreeAnchor: C3-C5 into an FPN whose P6 and P7 come from C5 (its
    RetinaNetNeck), and the 4-conv head on P3-P7 trained by learning to match."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: FPNConfig = field(default_factory=lambda: FPNConfig(extra_p6=False, p6p7_from="c5"))
    head: FreeAnchorHeadConfig = field(default_factory=FreeAnchorHeadConfig)
