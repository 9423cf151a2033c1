"""SimpleDet's dual box head (models/FPN/builder.py, FPNBboxDualHeadSmall): classification through
fully connected layers, box regression through convolutions, side by side on the same pooled RoI.

Classification: the flattened 7x7 RoI feature through two 1024-d fully connected layers (ReLU),
then the class logits. Regression: four 3x3 convolutions of 256 without bias (ReLU) that keep the
7x7 grid, then the box deltas from the whole flattened grid (no pooling: 256 x 49 inputs).

The head's output is one tensor, the classification feature followed by the flattened regression
feature, so that it passes through `run_head` (which pads and cuts RoI rows) like any box head;
DualBoxPredictor splits it again.
"""

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.heads.roi_heads import RoIHeads, RoIHeadsConfig


class DualHead(nn.Module):
    """(R, C, S, S) pooled RoIs -> (R, fc_dim + conv_dim * S * S): classification feature, then the
    flattened regression feature."""

    loads_backbone_weights = False

    def __init__(self, *, in_channels: int, resolution: int, fc_dim: int, num_convs: int, conv_dim: int) -> None:
        super().__init__()
        fc_dims = [in_channels * resolution * resolution, fc_dim, fc_dim]
        self.cls_fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(fc_dims[:-1], fc_dims[1:]))
        conv_dims = [in_channels] + [conv_dim] * num_convs
        self.reg_convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False)
                                       for a, b in zip(conv_dims[:-1], conv_dims[1:]))
        self.cls_features = fc_dim
        self.reg_features = conv_dims[-1] * resolution * resolution
        self.output_size = self.cls_features + self.reg_features
        # SimpleDet's inits: Xavier uniform fan_in x 3 (He uniform with a=1) for the fcs, N(0, 0.01)
        # for the convs
        for fc in self.cls_fcs:
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
        for conv in self.reg_convs:
            nn.init.normal_(conv.weight, std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        cls = x.flatten(1)
        for fc in self.cls_fcs:
            cls = F.relu(fc(cls), inplace=True)
        reg = x
        for conv in self.reg_convs:
            reg = F.relu(conv(reg), inplace=True)
        return torch.cat([cls, reg.flatten(1)], dim=1)


class DualBoxPredictor(nn.Module):
    """Class logits (background first) from the classification feature, box deltas (per class or
    shared) from the regression feature: BoxPredictor's outputs and parameter names."""

    def __init__(self, *, cls_features: int, reg_features: int, num_classes: int, class_agnostic: bool) -> None:
        super().__init__()
        self.cls_score = nn.Linear(cls_features, num_classes + 1)
        self.bbox_pred = nn.Linear(reg_features, 4 if class_agnostic else 4 * (num_classes + 1))
        self.split = (cls_features, reg_features)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cls, reg = x.split(self.split, dim=1)
        return self.cls_score(cls), self.bbox_pred(reg)


@dataclass
class DualHeadConfig:
    """FPNBboxDualHeadSmall: 2 fcs of 1024 for classification, 4 convs of 256 for regression."""

    fc_dim: int = 1024
    num_convs: int = 4
    conv_dim: int = 256

    def build(self, in_channels: int, resolution: int) -> DualHead:
        for name in ("fc_dim", "num_convs", "conv_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"model.roi_heads.box_head.{name} must be at least 1, got {getattr(self, name)}")
        return DualHead(in_channels=in_channels, resolution=resolution, fc_dim=self.fc_dim,
                        num_convs=self.num_convs, conv_dim=self.conv_dim)


@dataclass
class DualHeadRoIHeadsConfig(RoIHeadsConfig):
    """An R-CNN stage (RoIHeadsConfig's settings) whose box head is the dual head."""

    box_head: DualHeadConfig = field(default_factory=DualHeadConfig)

    @classmethod
    def from_roi_heads(cls, roi_heads: RoIHeadsConfig, box_head: DualHeadConfig | None = None
                       ) -> "DualHeadRoIHeadsConfig":
        """`roi_heads`'s settings with the dual head in place of its box head."""
        parts = {f.name: getattr(roi_heads, f.name) for f in dataclasses.fields(RoIHeadsConfig) if f.name != "box_head"}
        return cls(**parts, box_head=box_head if box_head is not None else DualHeadConfig())

    def build(self, in_channels: int, num_classes: int, **kwargs) -> RoIHeads:
        heads = super().build(in_channels, num_classes, **kwargs)
        # the classifier and the regressor read different features
        heads.box_predictor = DualBoxPredictor(cls_features=heads.box_head.cls_features,
                                               reg_features=heads.box_head.reg_features, num_classes=num_classes,
                                               class_agnostic=self.class_agnostic)
        return heads
