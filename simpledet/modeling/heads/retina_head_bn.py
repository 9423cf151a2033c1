"""RetinaNet's head with a norm after each subnet conv, as SimpleDet's NAS-FPN configs build it
(models/NASFPN/builder.py RetinaNetHeadWithBN): conv -> norm -> ReLU four times, then the
prediction conv. The conv weights are shared by every pyramid level, as in the plain head, but
each level has its own norms (SimpleDet's `cls_conv1_bn_s8`, `..._s16`, ...), since the levels'
statistics differ. The first conv takes the neck's width (384 in the @384 configs) to the head's.

Losses, anchors and decoding are the plain RetinaHead's (retina_head.py)."""

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.anchors import AnchorGenerator
from simpledet.modeling.heads.retina_head import RetinaHead, RetinaHeadConfig
from simpledet.modeling.norm import make_norm

NORMS = ("bn", "syncbn", "frozen_bn", "gn")


class NormedSubnet(nn.Module):
    """num_convs (3x3 conv, the level's norm, ReLU), then a 3x3 conv with `outputs_per_anchor`
    channels per anchor. norms[level][i] follows convs[i] on that level."""

    def __init__(self, *, in_channels: int, channels: int, num_levels: int, num_anchors: int,
                 outputs_per_anchor: int, num_convs: int, norm: str, bias_init: float) -> None:
        super().__init__()
        self.outputs_per_anchor = outputs_per_anchor
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1)
                                   for i in range(num_convs))
        self.norms = nn.ModuleList(nn.ModuleList(make_norm(norm, channels) for _ in range(num_convs))
                                   for _ in range(num_levels))
        self.pred = nn.Conv2d(channels, num_anchors * outputs_per_anchor, 3, padding=1)
        for conv in [*self.convs, self.pred]:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.pred.bias, bias_init)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Per level (N, H*W*A, outputs_per_anchor), ordered (y, x, anchor) like the anchors."""
        outs = []
        for x, norms in zip(features, self.norms):
            for conv, norm in zip(self.convs, norms):
                x = F.relu(norm(conv(x)), inplace=True)
            x = self.pred(x)
            n, _, h, w = x.shape
            outs.append(x.view(n, -1, self.outputs_per_anchor, h, w).permute(0, 3, 4, 1, 2)
                        .reshape(n, -1, self.outputs_per_anchor))
        return outs


@dataclass
class RetinaHeadWithNormConfig(RetinaHeadConfig):
    """RetinaHeadConfig plus the subnets' width (SimpleDet's head.conv_channel, 256 in every NAS-FPN
    config) and norm ("bn": SimpleDet's localbn; "syncbn")."""

    conv_channels: int = 256
    norm: str = "bn"

    def build(self, in_channels: int, num_classes: int) -> RetinaHead:
        if self.norm not in NORMS:
            raise UserError(f"model.head.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.conv_channels < 1 or self.num_convs < 1:
            raise UserError(f"model.head.conv_channels and num_convs must be positive, got {self.conv_channels}, "
                            f"{self.num_convs}")
        if len(self.anchor_sizes) != len(self.in_features):
            raise UserError(f"model.head.anchor_sizes has {len(self.anchor_sizes)} levels, in_features "
                            f"{len(self.in_features)}")
        anchors = AnchorGenerator(self.anchor_sizes, (self.aspect_ratios,) * len(self.anchor_sizes))
        num_anchors = anchors.num_anchors_per_location[0]
        num_outputs = num_classes + (1 if self.background_column else 0)
        prior_bias = -math.log((1 - self.prior_prob) / self.prior_prob)
        common = dict(in_channels=in_channels, channels=self.conv_channels, num_levels=len(self.in_features),
                      num_anchors=num_anchors, num_convs=self.num_convs, norm=self.norm)
        cls_subnet = NormedSubnet(outputs_per_anchor=num_outputs, bias_init=prior_bias, **common)
        box_subnet = NormedSubnet(outputs_per_anchor=4, bias_init=0.0, **common)
        return RetinaHead(cls_subnet, box_subnet, anchors, in_features=self.in_features,
                          background_column=self.background_column, fg_iou=self.fg_iou, bg_iou=self.bg_iou,
                          focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma, box_loss=self.box_loss,
                          box_loss_beta=self.box_loss_beta, box_weights=self.box_weights,
                          pre_nms_top_n=self.pre_nms_top_n, score_thresh=self.score_thresh,
                          nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img)
