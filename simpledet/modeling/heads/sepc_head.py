"""RetinaNet's head as SEPC uses it (SimpleDet models/sepc: SEPCFPN's CConv / LConv and
RetinaNetHeadWithBNWithSEPC with nb_conv = 0): the stacked PConvs of the neck stand in for the
subnets' four 3x3 convs, and each subnet keeps one 3x3 conv of its own, shared by the levels
(deformable from `start_level` on in SEPC-lite and SEPC), an optional integrated BN across levels,
ReLU, and then RetinaNet's predictor conv.

SimpleDet computes both branch convs in its neck, concatenates relu(CConv) and relu(LConv) on the
channel axis and splits them again in the head; here each subnet runs its own branch, the same
function without the round trip. Anchors, losses and decoding are RetinaHead's, unchanged.
"""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.modeling.heads.retina_head import RetinaHead, RetinaHeadConfig, Subnet
from simpledet.modeling.layers.pyramid import apply_level_conv, level_conv, norm_across_levels
from simpledet.modeling.necks.sepc import check_norm, check_start_level
from simpledet.modeling.norm import make_norm


class SEPCBranch(nn.Module):
    """A RetinaHead subnet: per level conv -> norm across levels (optional) -> ReLU -> predictor."""

    def __init__(self, channels: int, predictor: Subnet, *, deformable: bool, start_level: int,
                 norm: str | None) -> None:
        super().__init__()
        self.conv = level_conv(channels, channels, stride=1, deformable=deformable)  # CConv / LConv
        self.norm = make_norm(norm, channels) if norm is not None else None  # cconv_ibn / lconv_ibn
        self.predictor = predictor
        self.start_level = start_level

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        levels = [apply_level_conv(self.conv, x, i, self.start_level) for i, x in enumerate(features)]
        if self.norm is not None:
            levels = norm_across_levels(self.norm, levels)
        return self.predictor([F.relu(x) for x in levels])  # not in place: the split levels are views


@dataclass
class SEPCHeadConfig(RetinaHeadConfig):
    """RetinaHeadConfig whose subnets are SEPC branches. num_convs: plain 3x3 convs between a
    branch's conv and its predictor (SimpleDet's nb_conv: 0). branch_deform is SimpleDet's
    lcconv_deform, integrated_norm its iBN ("syncbn") or None."""

    num_convs: int = 0
    branch_deform: bool = True
    integrated_norm: str | None = "syncbn"
    start_level: int = 1

    def build(self, in_channels: int, num_classes: int) -> RetinaHead:
        check_norm("model.head.integrated_norm", self.integrated_norm)
        check_start_level("model.head.start_level", self.start_level, len(self.in_features))
        head = super().build(in_channels, num_classes)
        head.cls_subnet = SEPCBranch(in_channels, head.cls_subnet, deformable=self.branch_deform,
                                     start_level=self.start_level, norm=self.integrated_norm)
        head.box_subnet = SEPCBranch(in_channels, head.box_subnet, deformable=self.branch_deform,
                                     start_level=self.start_level, norm=self.integrated_norm)
        return head
