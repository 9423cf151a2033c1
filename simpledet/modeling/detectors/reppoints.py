"""RepPoints config (SimpleDet's models/RepPoints): the parts, and how they are joined."""

from dataclasses import dataclass, field

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.one_stage import OneStageConfig
from simpledet.modeling.heads.reppoints_head import RepPointsHeadConfig
from simpledet.modeling.necks.reppoints_fpn import RepPointsFPNConfig


@dataclass
class RepPointsConfig(OneStageConfig):
    """Defaults are SimpleDet's RepPoints: C3-C5 into a GroupNorm FPN whose P6 and P7 come from P5,
    and the point-set head on P3-P7."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(out_features=("c3", "c4", "c5")))
    neck: RepPointsFPNConfig = field(default_factory=RepPointsFPNConfig)
    head: RepPointsHeadConfig = field(default_factory=RepPointsHeadConfig)
