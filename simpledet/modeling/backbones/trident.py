"""TridentNet's backbone (Li et al. 2019): the last blocks of stage 4 run as three parallel branches
that share every weight (convolutions and norms) and differ only in the dilation of their 3x3
convolution (1, 2, 3: three receptive fields). The branch outputs are stacked on the batch axis,
branch-major, so the RPN and R-CNN heads see `num_branches x batch` images.

SimpleDet makes all of conv4_x but its first block trident blocks (num_c4_block = blocks - 1).

With `shared_norms=False` (SimpleDet's `branch_bn_shared = False`, its scratch configs) each branch
has norms of its own in the trident blocks: branch 0 uses the blocks' own (`body.layer3.M.bn1`, ...,
SimpleDet's `stage3_unit{M+1}_bn1_branch0`), branch b the copies in `branch_norms.branch{b}.{M}`.
"""

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.modeling.backbones.resnet import BasicBlock, Bottleneck, ResNetBase
from simpledet.modeling.backbones.resnet_v2 import PreActBottleneck
from simpledet.modeling.backbones.trident_v2 import make_deformable, run_preact_block
from simpledet.modeling.norm import conv_norm


def _block_norms(block: nn.Module) -> nn.ModuleDict:
    """Fresh copies of a block's norms, by the block's own names (downsample: its shortcut's)."""
    names = ("bn1", "bn2", "bn3") if isinstance(block, (Bottleneck, PreActBottleneck)) else ("bn1", "bn2")
    norms = {name: copy.deepcopy(getattr(block, name)) for name in names}
    if isinstance(block.downsample, nn.Sequential):  # v1's shortcut has a norm, v2's is a bare conv
        norms["downsample"] = copy.deepcopy(block.downsample[1])
    return nn.ModuleDict(norms)


def _run_block_with_norms(block: nn.Module, x: Tensor, dilation: int, norms: nn.ModuleDict) -> Tensor:
    """block(x, dilation) with `norms` in place of the block's own: the block's forward, written
    out, since modules are not swapped during a forward pass."""
    fuse = block.fuse_frozen_bn
    identity = x if block.downsample is None else conv_norm(block.downsample[0], norms["downsample"], x, fuse)
    if isinstance(block, BasicBlock):
        out = F.relu(conv_norm(block.conv1, norms["bn1"], x, fuse))
        out = conv_norm(block.conv2, norms["bn2"], out, fuse, dilation)
    else:
        out = F.relu(conv_norm(block.conv1, norms["bn1"], x, fuse))
        out = F.relu(conv_norm(block.conv2, norms["bn2"], out, fuse, dilation))
        if block.se is not None:
            out = block.se(out)
        out = conv_norm(block.conv3, norms["bn3"], out, fuse)
    return F.relu(out + identity)


class TridentBackbone(nn.Module):
    def __init__(self, resnet: ResNetBase, *, dilations: tuple[int, ...], num_trident_blocks: int | None,
                 test_branches: tuple[int, ...], shared_norms: bool = True, deform_blocks: int = 0) -> None:
        """num_trident_blocks: the last blocks of stage 4 that branch (None: all but the first);
        shared_norms: every branch normalises with the blocks' own norms (False: each its own);
        deform_blocks: the last blocks whose conv2 is deformable (ResNet v2 blocks; trident_v2.py)."""
        super().__init__()
        if "c4" not in resnet.out_features or "c5" in resnet.out_features:
            raise ValueError("TridentNet builds on a C4 backbone (out_features=('c4',))")
        self.body = resnet
        stage = resnet.stage(2)
        self.num_trident_blocks = len(stage) - 1 if num_trident_blocks is None else num_trident_blocks
        if not 1 <= self.num_trident_blocks <= len(stage):
            raise ValueError(f"num_trident_blocks must be in 1..{len(stage)}")
        self.dilations = tuple(dilations)
        self.test_branches = tuple(test_branches)
        self.branch_norms = None
        if deform_blocks:
            if not 0 < deform_blocks <= self.num_trident_blocks:
                raise ValueError(f"deform_blocks must be in 0..{self.num_trident_blocks} (the trident blocks)")
            if not all(isinstance(block, PreActBottleneck) for block in stage[len(stage) - deform_blocks:]):
                raise ValueError("deformable trident branches are built on ResNet v2 blocks (ResNetV2Config)")
            for block in stage[len(stage) - deform_blocks:]:
                make_deformable(block)
        if not shared_norms:
            split = len(stage) - self.num_trident_blocks
            if any(not (isinstance(block, PreActBottleneck) or isinstance(block, (BasicBlock, Bottleneck))
                        and isinstance(block.conv2, nn.Conv2d)) for block in stage[split:]):
                raise ValueError("per-branch norms need plain ResNet v1 blocks (no deformable convs) or v2 blocks")
            self.branch_norms = nn.ModuleDict({
                f"branch{b}": nn.ModuleDict({str(i): _block_norms(stage[i]) for i in range(split, len(stage))})
                for b in range(1, len(self.dilations))})

    @property
    def active_branches(self) -> tuple[int, ...]:
        """All branches in training; at test time the configured ones (TridentFast: the middle one)."""
        return tuple(range(len(self.dilations))) if self.training else self.test_branches

    def output_shape(self) -> dict[str, int]:
        return {"c4": self.body.output_shape()["c4"]}

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        body = self.body  # the ResNet up to stage 3, then stage 4 split into branches
        x = body.stage(1)(body.stage(0)(body.stem(x)))
        stage = body.stage(2)
        split = len(stage) - self.num_trident_blocks
        x = stage[:split](x)
        branches = []
        for b in self.active_branches:
            y = x
            for i in range(split, len(stage)):
                own = self.branch_norms is None or b == 0
                if isinstance(stage[i], PreActBottleneck) and not (own and isinstance(stage[i].conv2, nn.Conv2d)):
                    norms = None if own else self.branch_norms[f"branch{b}"][str(i)]
                    y = run_preact_block(stage[i], y, self.dilations[b], norms)
                elif own:
                    y = stage[i](y, dilation=self.dilations[b])
                else:
                    y = _run_block_with_norms(stage[i], y, self.dilations[b], self.branch_norms[f"branch{b}"][str(i)])
            branches.append(y)
        return OrderedDict(c4=torch.cat(branches, dim=0))
