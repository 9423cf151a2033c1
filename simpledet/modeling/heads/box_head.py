"""R-CNN box head parts: the 2MLP feature head and the class / box predictor.

Every box head (this one, the C4 heads' stage 5) maps pooled RoIs (R, C, S, S) to one vector per
RoI, of `output_size` values, which the predictor reads."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


class MLPHead(nn.Module):
    """Flattened RoI features through `num_fc` fully connected layers with ReLU (2MLP: two 1024-d)."""

    loads_backbone_weights = False

    def __init__(self, *, in_features: int, fc_dim: int, num_fc: int, bias: bool) -> None:
        super().__init__()
        dims = [in_features] + [fc_dim] * num_fc
        self.fcs = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:]))
        self.output_size = fc_dim
        for fc in self.fcs:
            nn.init.kaiming_uniform_(fc.weight, a=1)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x), inplace=True)
        return x


class BoxPredictor(nn.Module):
    """Class logits (background at index 0, then num_classes) and box deltas, per class or one set
    shared by all classes (class_agnostic)."""

    def __init__(self, *, in_features: int, num_classes: int, class_agnostic: bool) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 if class_agnostic else 4 * (num_classes + 1))
        self.class_agnostic = class_agnostic
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


@dataclass
class MLPHeadConfig:
    """SimpleDet's 2MLP head: two 1024-d layers, built as 1x1 convs without bias (fc_bias=False);
    torchvision's TwoMLPHead has biases."""

    fc_dim: int = 1024
    num_fc: int = 2
    fc_bias: bool = False

    def build(self, in_channels: int, resolution: int) -> MLPHead:
        return MLPHead(in_features=in_channels * resolution * resolution, fc_dim=self.fc_dim, num_fc=self.num_fc,
                       bias=self.fc_bias)
