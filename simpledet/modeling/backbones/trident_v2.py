"""TridentNet's branches on ResNet v2 (pre-activation) blocks with norms of their own and deformable
3x3 convs, as SimpleDet's multi-scale TridentNet builds them (models/tridentnet/resnet_v2.py with
branch_bn_shared = False and branch_deform = True):

- norms: each branch has its own bn1 / bn2 / bn3 in every trident block; the convs stay shared;
- deformable blocks: in the last three blocks of stage 4 (SimpleDet's `i >= num_block - 2`) conv2 is a
  deformable conv with 4 deformable groups whose offsets come from a plain 3x3 conv (padding 1, no
  dilation, with bias), shared by the branches; the deformable conv samples at the branch's dilation.
"""

from torch import Tensor, nn

from simpledet.modeling.backbones.resnet_v2 import PreActBottleneck
from simpledet.modeling.layers.deform_conv import DeformConv2d
from simpledet.modeling.norm import FrozenBatchNorm2d, conv_norm

SIMPLEDET_DEFORM_BLOCKS = 3  # branch_deform: the last three units of stage 4
DEFORMABLE_GROUPS = 4


def make_deformable(block: PreActBottleneck) -> None:
    """Replaces the block's conv2 by a deformable conv of the same shape (offsets zero-initialised: a
    plain conv until trained), its offsets from an undilated conv as SimpleDet's."""
    conv = block.conv2
    block.conv2 = DeformConv2d(conv.in_channels, conv.out_channels, kernel_size=3, stride=conv.stride[0], padding=1,
                               dilation=1, deformable_groups=DEFORMABLE_GROUPS, bias=False)


def preact_norms(block: PreActBottleneck) -> dict[str, nn.Module]:
    return {"bn1": block.bn1, "bn2": block.bn2, "bn3": block.bn3}


def run_preact_block(block: PreActBottleneck, x: Tensor, dilation: int, norms: nn.ModuleDict | None) -> Tensor:
    """block(x, dilation) with `norms` (bn1..bn3; None: the block's own) and a deformable conv2 run at
    `dilation`: the block's forward, written out, since modules are not swapped during a forward."""
    norms = preact_norms(block) if norms is None else norms
    fuse = block.fuse_frozen_bn
    act = block.relu(norms["bn1"](x))
    shortcut = x if block.downsample is None else block.downsample(act)
    out = block.relu(conv_norm(block.conv1, norms["bn2"], act, fuse))
    if isinstance(block.conv2, DeformConv2d):
        bn3 = norms["bn3"]
        if fuse and isinstance(bn3, FrozenBatchNorm2d):
            out = block.conv2(out, *bn3.scale_and_shift(), dilation=dilation)
        else:
            out = bn3(block.conv2(out, dilation=dilation))
        out = block.relu(out)
    else:
        out = block.relu(conv_norm(block.conv2, norms["bn3"], out, fuse, dilation))
    return block.conv3(out) + shortcut
