"""The 2MLP box head with a normalisation layer after each fully connected layer, as SimpleDet's
Bbox2fcHead builds it when its normalizer is a trainable BN (symbol/builder.py `add_norm`; the
EfficientNet configs): fc (no bias) -> norm -> ReLU, twice.

SimpleDet's fc layers are 1x1 convs over the RoI feature reshaped to (R, C*S*S, 1, 1), and its BN
normalises each of their channels over the RoIs of the batch; here each Linear's output is viewed
as (R, D, 1, 1) for the same norm layer, so "bn", "syncbn" and "gn" all apply. The names are the
plain head's (`fcs`) plus `norms`."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.norm import make_norm

NORMS = ("bn", "syncbn", "gn")


class NormMLPHead(nn.Module):
    loads_backbone_weights = False

    def __init__(self, *, in_features: int, fc_dim: int, num_fc: int, norm: str) -> None:
        super().__init__()
        dims = [in_features] + [fc_dim] * num_fc
        self.fcs = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(make_norm(norm, fc_dim) for _ in range(num_fc))
        self.output_size = fc_dim
        for fc in self.fcs:
            # SimpleDet's Xavier(in, uniform, magnitude 3): uniform with bound sqrt(3 / fan_in)
            nn.init.kaiming_uniform_(fc.weight, a=1)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for fc, norm in zip(self.fcs, self.norms):
            x = fc(x)
            x = F.relu(norm(x.reshape(*x.shape, 1, 1)).flatten(1), inplace=True)
        return x


@dataclass
class NormMLPHeadConfig:
    """SimpleDet's 2fc head with its normalizer: two 1024-d layers without bias, each followed by
    `norm` ("bn": per-GPU BN over the RoIs, as SimpleDet's EfficientNet configs; "syncbn", "gn")."""

    fc_dim: int = 1024
    num_fc: int = 2
    norm: str = "bn"

    def build(self, in_channels: int, resolution: int) -> NormMLPHead:
        if self.norm not in NORMS:
            raise UserError(f"model.roi_heads.box_head.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        return NormMLPHead(in_features=in_channels * resolution * resolution, fc_dim=self.fc_dim,
                           num_fc=self.num_fc, norm=self.norm)
