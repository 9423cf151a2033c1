"""FreeAnchor's head: RetinaNet's subnets, anchors and test-time decoding, trained with the
learning-to-match loss (free_anchor_loss.py) in place of IoU matching and focal loss."""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from simpledet.errors import UserError
from simpledet.modeling.anchors import AnchorGenerator, Anchors
from simpledet.modeling.box_coder import BoxCoder
from simpledet.modeling.heads.free_anchor_loss import FreeAnchorLoss
from simpledet.modeling.heads.retina_head import RetinaHead, Subnet, retina_anchor_sizes
from simpledet.structures.ground_truth import PaddedGroundTruth


class FreeAnchorHead(RetinaHead):
    """RetinaHead whose `losses` is FreeAnchor's; forward, anchors and postprocess are RetinaNet's."""

    def __init__(self, cls_subnet: Subnet, box_subnet: Subnet, anchor_generator: AnchorGenerator,
                 loss: FreeAnchorLoss, *, in_features: tuple[str, ...], box_weights: tuple[float, float, float, float],
                 pre_nms_top_n: int, score_thresh: float, nms_thresh: float, detections_per_img: int) -> None:
        # RetinaNet's matching and focal settings go unused: `losses` below replaces them
        super().__init__(cls_subnet, box_subnet, anchor_generator, in_features=in_features, background_column=False,
                         fg_iou=0.5, bg_iou=0.4, focal_alpha=loss.alpha, focal_gamma=loss.gamma, box_loss="smooth_l1",
                         box_loss_beta=loss.box_loss_beta, box_weights=box_weights, pre_nms_top_n=pre_nms_top_n,
                         score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        self.loss = loss

    def losses(self, outputs: tuple[list[Tensor], list[Tensor]], anchors: Anchors, gt: PaddedGroundTruth
               ) -> dict[str, Tensor]:
        logits, deltas = (torch.cat(levels, 1) for levels in outputs)
        return self.loss(logits, deltas, anchors.all, gt)


@dataclass
class FreeAnchorHeadConfig:
    """SimpleDet's FreeAnchor (config/FreeAnchor/free_anchor_r50v1_fpn_1x.py): RetinaNet's P3-P7
    head with 9 anchors per location and the classifier's prior at 0.02; bags of the 50 anchors of
    highest IoU, alpha 0.5 between the positive and negative parts, gamma 2 on the negatives, IoU
    0.6 where a decoded box starts to count as detecting an object, smooth L1 (beta 0.11) x 0.75 in
    an anchor's box likelihood; deltas scaled by std (0.1, 0.1, 0.2, 0.2) = weights (10, 10, 5, 5).
    Test time as RetinaNet: the top 1000 per level above score 0.05, per-class NMS 0.5, 100 detections."""

    in_features: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
    anchor_sizes: tuple[tuple[float, ...], ...] = retina_anchor_sizes()
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    num_convs: int = 4
    prior_prob: float = 0.02
    alpha: float = 0.5
    gamma: float = 2.0
    bag_size: int = 50
    iou_thresh: float = 0.6
    box_loss_beta: float = 0.11
    box_loss_weight: float = 0.75
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    pre_nms_top_n: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def check(self) -> None:
        """Values outside their range fail here, when the model is built, naming the field."""
        for name in ("prior_prob", "alpha", "iou_thresh"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise UserError(f"model.head.{name} must be between 0 and 1 (exclusive), got {value}")
        for name, value, least in (("bag_size", self.bag_size, 1), ("gamma", self.gamma, 0.0)):
            if value < least:
                raise UserError(f"model.head.{name} must be at least {least}, got {value}")
        for name in ("box_loss_beta", "box_loss_weight"):
            if getattr(self, name) <= 0:
                raise UserError(f"model.head.{name} must be positive, got {getattr(self, name)}")

    def build(self, in_channels: int, num_classes: int) -> FreeAnchorHead:
        self.check()
        if len(self.anchor_sizes) != len(self.in_features):
            raise ValueError(f"anchor_sizes has {len(self.anchor_sizes)} levels, in_features {len(self.in_features)}")
        anchors = AnchorGenerator(self.anchor_sizes, (self.aspect_ratios,) * len(self.anchor_sizes))
        num_anchors = anchors.num_anchors_per_location[0]
        prior_bias = -math.log((1 - self.prior_prob) / self.prior_prob)
        cls_subnet = Subnet(channels=in_channels, num_anchors=num_anchors, outputs_per_anchor=num_classes,
                            num_convs=self.num_convs, bias_init=prior_bias)
        box_subnet = Subnet(channels=in_channels, num_anchors=num_anchors, outputs_per_anchor=4,
                            num_convs=self.num_convs, bias_init=0.0)
        loss = FreeAnchorLoss(BoxCoder(self.box_weights), alpha=self.alpha, gamma=self.gamma, bag_size=self.bag_size,
                              iou_thresh=self.iou_thresh, box_loss_beta=self.box_loss_beta,
                              box_loss_weight=self.box_loss_weight)
        return FreeAnchorHead(cls_subnet, box_subnet, anchors, loss, in_features=self.in_features,
                              box_weights=self.box_weights, pre_nms_top_n=self.pre_nms_top_n,
                              score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                              detections_per_img=self.detections_per_img)
