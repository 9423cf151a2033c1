"""SimpleDet's ReduceNeck: the RPN reads C4 as it is, the R-CNN reads C5 through a 3x3 conv + ReLU
that reduces its channels (2048 -> 1024), for the "c5_red" Cascade R-CNN configs."""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


class ReduceNeck(nn.Module):
    """Passes the backbone's features on and adds `{feature}_reduced`."""

    def __init__(self, in_channels: dict[str, int], *, feature: str, out_channels: int) -> None:
        super().__init__()
        self.feature = feature
        self.reduce = nn.Conv2d(in_channels[feature], out_channels, 3, padding=1)
        nn.init.normal_(self.reduce.weight, std=0.01)
        nn.init.zeros_(self.reduce.bias)
        self._output_shape = {**in_channels, f"{feature}_reduced": out_channels}

    def output_shape(self) -> dict[str, int]:
        return dict(self._output_shape)

    def forward(self, features: dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        out = OrderedDict(features)
        out[f"{self.feature}_reduced"] = F.relu(self.reduce(features[self.feature]), inplace=True)
        return out


@dataclass
class ReduceNeckConfig:
    feature: str = "c5"
    out_channels: int = 1024

    def build(self, in_channels: dict[str, int]) -> ReduceNeck:
        return ReduceNeck(in_channels, feature=self.feature, out_channels=self.out_channels)
