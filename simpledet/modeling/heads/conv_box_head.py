"""The box head of SimpleDet's PAFPN configs (config/FPG/faster_r50v1b_pafpn3@*): symbol/builder.py's
Bbox2fcHead with SyncBN after each fc layer (box_head_bn.py's NormMLPHead), whose scale and shift
SimpleDet keeps fixed at 1 and 0 (those configs list "gamma" and "beta" among the fixed
parameters) while the statistics train."""

from dataclasses import dataclass

from simpledet.modeling.heads.box_head_bn import NormMLPHead, NormMLPHeadConfig
from simpledet.modeling.necks.pafpn import freeze_affine


@dataclass
class FixedAffineNormMLPHeadConfig(NormMLPHeadConfig):
    """NormMLPHeadConfig, plus freeze_norm_affine: the norms' scale and shift are not trained."""

    norm: str = "syncbn"
    freeze_norm_affine: bool = True

    def build(self, in_channels: int, resolution: int) -> NormMLPHead:
        head = super().build(in_channels, resolution)
        if self.freeze_norm_affine:
            freeze_affine(head)
        return head
