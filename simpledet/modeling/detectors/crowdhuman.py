"""SimpleDet's CrowdHuman detectors (models/crowdhuman): Faster R-CNN and the double-prediction
R-CNN (heads/double_pred_head.py), scored by CrowdHuman's AP and MR^-2 with ignore regions
(engine/crowdhuman_metrics.py) instead of COCO's stats."""

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from simpledet.errors import UserError
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.double_pred_head import DoublePredRoIHeadsConfig


@dataclass
class DoublePredRCNNConfig(FasterRCNNConfig):
    """Faster R-CNN whose R-CNN stage predicts two boxes per proposal (DoublePredRoIHeadsConfig)."""

    roi_heads: DoublePredRoIHeadsConfig = field(default_factory=DoublePredRoIHeadsConfig)

    def build_roi_heads(self, channels: dict[str, int]) -> nn.Module:
        if not isinstance(self.roi_heads, DoublePredRoIHeadsConfig):
            raise UserError("model.roi_heads: the double-prediction R-CNN needs a DoublePredRoIHeadsConfig")
        return super().build_roi_heads(channels)


@dataclass
class CrowdHumanFasterRCNNConfig(FasterRCNNConfig):
    """Faster R-CNN on CrowdHuman: `eval` reports AP and MR^-2."""

    crowdhuman_metrics: ClassVar[bool] = True


@dataclass
class CrowdHumanDoublePredConfig(DoublePredRCNNConfig):
    """The double-prediction R-CNN on CrowdHuman: `eval` reports AP and MR^-2."""

    crowdhuman_metrics: ClassVar[bool] = True
