"""RetinaNet with SEPC (SimpleDet models/sepc): the RetinaNet detector with the SEPC neck
(necks/sepc.py) and head (heads/sepc_head.py), and SimpleDet's BatchNorm settings.

SimpleDet's SEPC configs train every BatchNorm (backbone, FPN outputs, integrated BNs) as synchronised
BN with eps 1e-4 and MXNet momentum 0.997, i.e. running = 0.997 running + 0.003 batch, which is
torch's momentum 0.003. `bn_eps` and `bn_momentum` are applied to every BatchNorm of the built
model (a frozen BN takes the eps).
"""

from dataclasses import dataclass, field

from torch import nn

from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.one_stage import OneStageDetector
from simpledet.modeling.detectors.retinanet import RetinaNetConfig
from simpledet.modeling.heads.retina_head import RetinaHeadConfig
from simpledet.modeling.heads.sepc_head import SEPCHeadConfig
from simpledet.modeling.necks.sepc import SEPCNeckConfig
from simpledet.modeling.norm import FrozenBatchNorm2d


def set_batch_norm(model: nn.Module, eps: float, momentum: float) -> None:
    """eps and momentum (torch's convention) of every BatchNorm in `model`; eps of frozen ones."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps, m.momentum = eps, momentum
        elif isinstance(m, FrozenBatchNorm2d):
            m.eps = eps


@dataclass
class SEPCRetinaNetConfig(RetinaNetConfig):
    """Defaults are SimpleDet's config/sepc/retina_r50v1b_fpn_sepc_1x.py (full SEPC). `head` is a
    SEPCHeadConfig, or a plain RetinaHeadConfig for the folder's baseline (pconv_num 0)."""

    backbone: ResNetConfig = field(default_factory=lambda: ResNetConfig(
        norm="syncbn", freeze_at=1, out_features=("c3", "c4", "c5")))
    neck: SEPCNeckConfig = field(default_factory=SEPCNeckConfig)
    head: RetinaHeadConfig = field(default_factory=SEPCHeadConfig)
    bn_eps: float = 1e-4
    bn_momentum: float = 0.003

    def build(self) -> OneStageDetector:
        if not (self.bn_eps > 0 and 0 <= self.bn_momentum <= 1):
            raise UserError(f"model.bn_eps must be > 0 and model.bn_momentum in [0, 1], got {self.bn_eps} and "
                            f"{self.bn_momentum}")
        model = super().build()
        set_batch_norm(model, self.bn_eps, self.bn_momentum)
        return model
