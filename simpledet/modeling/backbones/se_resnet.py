"""SE-ResNet v1b as SimpleDet builds it for its scratch Mask R-CNN (models/se/builder.py,
`se_v2_resnet_v1b_unit`): every bottleneck gains a squeeze-excitation after its 3x3 conv's norm and
ReLU, ahead of the 1x1 expansion. The excitation squeezes the bottleneck width by 4 (filter // 16 of
the block's output, e.g. 64 -> 16 in stage 1), with two bias-free 1x1 convs, ReLU6 between and a
sigmoid gate (models/efficientnet/builder.py `se`).

The ResNet is ours unchanged; each block's `se` slot holds the excitation, so the parameter names are
ResNet's plus `layerN.M.se.fc1` / `se.fc2` (SimpleDet's `stageN_unitM_se2_fc1` / `_fc2`)."""

from dataclasses import dataclass

from torch import nn

from simpledet.errors import UserError
from simpledet.modeling.backbones.efficientnet import SqueezeExcite
from simpledet.modeling.backbones.resnet import Bottleneck, ResNet, ResNetConfig


def add_squeeze_excitation(resnet: ResNet, reduction: int) -> ResNet:
    """Put an excitation (width -> width // reduction -> width) in every bottleneck of `resnet`."""
    blocks = [m for m in resnet.modules() if isinstance(m, Bottleneck)]
    if not blocks:
        raise UserError("model.backbone: SE-ResNet needs bottleneck blocks (depth 50 or more)")
    for block in blocks:
        width = block.conv2.out_channels
        block.se = SqueezeExcite(width, width // reduction)
        for conv in (block.se.fc1, block.se.fc2):
            # SimpleDet's default initialiser (Xavier, gaussian, fan_in, magnitude 2) is He's fan_in
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    return resnet


@dataclass
class SEResNetConfig(ResNetConfig):
    """A ResNet (any field of ResNetConfig) with squeeze-excitation in every bottleneck;
    `se_reduction` 4 as SimpleDet (the bottleneck width divided by 4)."""

    se_reduction: int = 4

    def build(self) -> ResNet:
        if self.se_reduction < 1:
            raise UserError(f"model.backbone.se_reduction must be a positive integer, got {self.se_reduction}")
        resnet = add_squeeze_excitation(super().build(), self.se_reduction)
        resnet.freeze(self.freeze_at)  # the excitations of frozen stages freeze with them
        return resnet
