"""TridentNet's backbone (Li et al. 2019): the last blocks of stage 4 run as three parallel branches
that share every weight (convolutions and norms) and differ only in the dilation of their 3x3
convolution (1, 2, 3: three receptive fields). The branch outputs are stacked on the batch axis,
branch-major, so the RPN and R-CNN heads see `num_branches x batch` images.

SimpleDet makes all of conv4_x but its first block trident blocks (num_c4_block = blocks - 1).
"""

from collections import OrderedDict

import torch
from torch import Tensor, nn

from simpledet.modeling.norm import conv_norm


class TridentBackbone(nn.Module):
    def __init__(self, resnet: nn.Module, dilations: tuple[int, ...] = (1, 2, 3),
                 num_trident_blocks: int | None = None, test_branches: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if "c4" not in resnet.out_features or "c5" in resnet.out_features:
            raise ValueError("TridentNet builds on a C4 backbone (out_features=('c4',))")
        self.body = resnet
        stage = resnet.layer3
        self.num_trident_blocks = len(stage) - 1 if num_trident_blocks is None else num_trident_blocks
        if not 1 <= self.num_trident_blocks <= len(stage):
            raise ValueError(f"num_trident_blocks must be in 1..{len(stage)}")
        self.dilations = tuple(dilations)
        self.test_branches = tuple(range(len(dilations))) if test_branches is None else tuple(test_branches)
        self.out_channels = {"c4": resnet.out_channels["c4"]}

    @property
    def active_branches(self) -> tuple[int, ...]:
        """All branches in training; at test time the configured ones (TridentFast: the middle one)."""
        return tuple(range(len(self.dilations))) if self.training else self.test_branches

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        body = self.body  # ResNet.forward up to stage 3, then stage 4 split into branches
        if getattr(body, "data_bn", None) is not None:
            x = body.data_bn(x)
        x = body.maxpool(body.relu(conv_norm(body.conv1, body.bn1, x, body.fuse_frozen_bn)))
        x = body.layer2(body.layer1(x))
        split = len(body.layer3) - self.num_trident_blocks
        x = body.layer3[:split](x)
        branches = []
        for b in self.active_branches:
            y = x
            for block in body.layer3[split:]:
                y = _run_dilated(block, y, self.dilations[b])
            branches.append(y)
        return OrderedDict(c4=torch.cat(branches, dim=0))


def _run_dilated(block: nn.Module, x: Tensor, dilation: int) -> Tensor:
    """The block with its 3x3 conv dilated (padding = dilation keeps the size): same weights."""
    conv = block.conv2
    saved = conv.dilation, conv.padding
    conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
    try:
        return block(x)
    finally:
        conv.dilation, conv.padding = saved
