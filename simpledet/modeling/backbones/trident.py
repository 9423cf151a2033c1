"""TridentNet's backbone (Li et al. 2019): the last blocks of stage 4 run as three parallel branches
that share every weight (convolutions and norms) and differ only in the dilation of their 3x3
convolution (1, 2, 3: three receptive fields). The branch outputs are stacked on the batch axis,
branch-major, so the RPN and R-CNN heads see `num_branches x batch` images.

SimpleDet makes all of conv4_x but its first block trident blocks (num_c4_block = blocks - 1).
"""

from collections import OrderedDict

import torch
from torch import Tensor, nn

from simpledet.modeling.backbones.resnet import ResNetBase


class TridentBackbone(nn.Module):
    def __init__(self, resnet: ResNetBase, *, dilations: tuple[int, ...], num_trident_blocks: int | None,
                 test_branches: tuple[int, ...]) -> None:
        """num_trident_blocks: the last blocks of stage 4 that branch (None: all but the first)."""
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
            for block in stage[split:]:
                y = block(y, dilation=self.dilations[b])
            branches.append(y)
        return OrderedDict(c4=torch.cat(branches, dim=0))
