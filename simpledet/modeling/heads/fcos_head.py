"""FCOS's head: per point of every pyramid level, class logits, the distances to the four sides
of the object and a centerness logit (`forward`); their losses (`losses`) and the detections
(`postprocess`), both called by the detector.

One head for SimpleDet's FCOS (models/FCOS) and torchvision's (`fcos_resnet50_fpn`); the config
fields name where they differ:

- towers: two of num_convs (3x3 conv, GroupNorm 32, ReLU), convolutions shared by every level;
  SimpleDet keeps a GroupNorm per level (`norm_per_level`), torchvision one for all levels.
- centerness: on the classification tower (SimpleDet, as the FCOS paper) or on the box tower
  (torchvision, as FCOS's later versions).
- distances: exp(s_l x) in pixels with a learned scale s_l per level (SimpleDet), or relu(x) in
  units of the level's stride (torchvision).
- points: SimpleDet's at i x stride + stride / 2; torchvision's at i x (padded size // feature
  size), the centres of its anchors.
- `assign_rule`, `loss_rule`, `score_rule`: whose targets, losses and decoding (below and
  modeling/fcos_targets.py).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, generalized_box_iou_loss, sigmoid_focal_loss

from simpledet.modeling.fcos_targets import (
    FCOSPoints,
    assign_simpledet,
    assign_torchvision,
    centerness,
    grid_points,
    matched_distances,
)
from simpledet.modeling.nms import nms_per_label
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes

RULES = ("simpledet", "torchvision")


class Tower(nn.Module):
    """num_convs (3x3 conv, GroupNorm, ReLU): the convolutions shared by every level, the
    GroupNorms per level (`norms[level]`) or shared (`norms[0]`)."""

    def __init__(self, *, channels: int, num_convs: int, num_groups: int, norm_sets: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_convs))
        self.norms = nn.ModuleList(nn.ModuleList(nn.GroupNorm(num_groups, channels) for _ in range(num_convs))
                                   for _ in range(norm_sets))
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor, level: int) -> Tensor:
        norms = self.norms[level if len(self.norms) > 1 else 0]
        for conv, norm in zip(self.convs, norms):
            x = F.relu(norm(conv(x)), inplace=True)
        return x


class Scale(nn.Module):
    """SimpleDet's learned per-level factor on the distance logits (offset_scale_<stride>_w),
    shaped (1, 1, 1, 1) as SimpleDet's, so it broadcasts over a feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight


def _flat(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, H * W, C), ordered (y, x) like the points."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class FCOSHead(nn.Module):
    def __init__(self, *, in_channels: int, num_outputs: int, in_features: tuple[str, ...], strides: tuple[int, ...],
                 num_convs: int, num_groups: int, prior_prob: float, norm_per_level: bool,
                 centerness_on_box_tower: bool, exp_distances: bool, point_offset: float,
                 spacing_from_padded: bool, label_offset: int, assign_rule: str, size_bounds: tuple[float, ...],
                 center_sampling_radius: float, loss_rule: str, focal_alpha: float, focal_gamma: float,
                 score_rule: str, pre_nms_top_n: int, score_thresh: float, nms_thresh: float,
                 detections_per_img: int, bias_lr_mult: float = 1.0, bias_weight_decay: float | None = None) -> None:
        """bias_lr_mult, bias_weight_decay: the optimizer's lr multiplier and weight decay for the
        biases of every conv (None: the run's weight decay), engine/optimizer.py's overrides."""
        super().__init__()
        self.in_features = tuple(in_features)
        self.strides = tuple(strides)
        norm_sets = len(in_features) if norm_per_level else 1
        self.cls_tower = Tower(channels=in_channels, num_convs=num_convs, num_groups=num_groups, norm_sets=norm_sets)
        self.box_tower = Tower(channels=in_channels, num_convs=num_convs, num_groups=num_groups, norm_sets=norm_sets)
        self.cls_pred = nn.Conv2d(in_channels, num_outputs, 3, padding=1)
        self.box_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1)
        for conv in (self.cls_pred, self.box_pred, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        # the classifier starts at `prior_prob` for every class (Lin et al., 2017)
        nn.init.constant_(self.cls_pred.bias, -math.log((1 - prior_prob) / prior_prob))
        self.scales = nn.ModuleList(Scale() for _ in in_features) if exp_distances else None
        setting = {"lr_mult": bias_lr_mult}
        if bias_weight_decay is not None:
            setting["weight_decay"] = bias_weight_decay
        if setting != {"lr_mult": 1.0}:
            self.optimizer_overrides = {f"{name}.bias": setting for name, module in self.named_modules()
                                        if isinstance(module, nn.Conv2d)}
        self.centerness_on_box_tower = centerness_on_box_tower
        self.point_offset = point_offset
        self.spacing_from_padded = spacing_from_padded
        # column j of the classifier is label j + 1, or label j with torchvision's extra column 0
        self.label_offset = label_offset
        self.assign_rule = assign_rule
        self.size_bounds = tuple(size_bounds)
        self.center_sampling_radius = center_sampling_radius
        self.loss_rule = loss_rule
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.score_rule = score_rule
        self.pre_nms_top_n = pre_nms_top_n
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def forward(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per level: class logits (N, H*W, K), distances (N, H*W, 4) left, top, right, bottom (in
        pixels with exp distances, in strides otherwise) and centerness logits (N, H*W)."""
        logits, distances, ctr = [], [], []
        for level, name in enumerate(self.in_features):
            x = features[name]
            cls_x, box_x = self.cls_tower(x, level), self.box_tower(x, level)
            logits.append(_flat(self.cls_pred(cls_x)))
            d = self.box_pred(box_x)
            d = torch.exp(self.scales[level](d)) if self.scales is not None else F.relu(d)
            distances.append(_flat(d))
            ctr.append(_flat(self.centerness(box_x if self.centerness_on_box_tower else cls_x))[..., 0])
        return logits, distances, ctr

    def anchors(self, features: dict[str, Tensor], sizes: ImageSizes) -> FCOSPoints:
        """The points the outputs are relative to (FCOS's anchors)."""
        levels = [grid_points(tuple(features[name].shape[-2:]), sizes.padded, stride, self.point_offset,
                              self.spacing_from_padded, features[name].device)
                  for name, stride in zip(self.in_features, self.strides)]
        return FCOSPoints(levels, sizes)

    def _pixels(self, distances: Tensor, stride: int | Tensor) -> Tensor:
        """Distances in pixels: as predicted with exp distances, times the stride otherwise."""
        return distances if self.scales is not None else distances * stride

    def losses(self, outputs: tuple[list[Tensor], list[Tensor], list[Tensor]], points: FCOSPoints,
               gt: PaddedGroundTruth) -> dict[str, Tensor]:
        if self.assign_rule == "simpledet":
            matched = assign_simpledet(points, gt.boxes, gt.valid, self.size_bounds)
        else:
            matched = assign_torchvision(points, gt.boxes, gt.valid, self.size_bounds, self.strides,
                                         self.center_sampling_radius)
        # losses in fp32 under mixed precision
        logits, distances, ctr = (torch.cat([o.float() for o in levels], 1) for levels in outputs)
        xy = points.all
        counts = torch.tensor([len(level) for level in points.levels], device=xy.device)
        point_stride = torch.tensor(self.strides, dtype=torch.float32, device=xy.device).repeat_interleave(counts)
        fg = matched >= 0
        target_ltrb = matched_distances(xy, gt.boxes, matched)  # pixels
        # each foreground point's class column; the rest point one past the last column, cut off
        num_columns = logits.shape[-1]
        column = torch.gather(gt.labels, 1, matched.clamp(min=0)) - self.label_offset
        column = torch.where(fg, column, num_columns)
        cls_targets = logits.new_zeros((*logits.shape[:-1], num_columns + 1))
        cls_targets = cls_targets.scatter_(2, column[..., None], 1.0)[..., :num_columns]
        focal = sigmoid_focal_loss(logits, cls_targets, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                   reduction="none").sum(-1)
        pred_ltrb = self._pixels(distances, point_stride[None, :, None])
        if self.loss_rule == "simpledet":
            return self._simpledet_losses(focal, ctr, pred_ltrb, target_ltrb, fg, points.in_image())
        return self._torchvision_losses(focal, ctr, pred_ltrb, target_ltrb, fg, xy)

    @staticmethod
    def _simpledet_losses(focal: Tensor, ctr: Tensor, pred_ltrb: Tensor, target_ltrb: Tensor, fg: Tensor,
                          in_image: Tensor) -> dict[str, Tensor]:
        """SimpleDet's (models/FCOS/loss.py): focal loss over the points inside the images, divided
        by the foreground count + 1; centerness BCE averaged over the foreground points of nonzero
        target; the IoU loss -log((I + 1) / (U + 1)) over the same points, weighted by the target
        centerness and divided by its sum."""
        positive = fg & in_image
        cls_loss = torch.where(in_image, focal, 0.0).sum() / (positive.sum() + 1)
        target_ctr = torch.where(positive, centerness(target_ltrb), 0.0)
        used = target_ctr > 0
        bce = F.binary_cross_entropy_with_logits(ctr, target_ctr, reduction="none")
        ctr_loss = torch.where(used, bce, 0.0).sum() / (used.sum() + 1e-30)
        pred = pred_ltrb.clamp(0, 1e4)
        target = torch.where(used[..., None], target_ltrb, 0.0)
        inter = ((torch.minimum(pred[..., 0], target[..., 0]) + torch.minimum(pred[..., 2], target[..., 2]))
                 * (torch.minimum(pred[..., 1], target[..., 1]) + torch.minimum(pred[..., 3], target[..., 3])))
        pred_area = (pred[..., 0] + pred[..., 2]) * (pred[..., 1] + pred[..., 3])
        target_area = (target[..., 0] + target[..., 2]) * (target[..., 1] + target[..., 3])
        iou_loss = -torch.log((inter + 1.0) / (pred_area + target_area - inter + 1.0))
        box_loss = torch.where(used, iou_loss * target_ctr, 0.0).sum() / (target_ctr.sum() + 1e-30)
        return {"loss_cls": cls_loss, "loss_box": box_loss, "loss_centerness": ctr_loss}

    @staticmethod
    def _torchvision_losses(focal: Tensor, ctr: Tensor, pred_ltrb: Tensor, target_ltrb: Tensor, fg: Tensor,
                            xy: Tensor) -> dict[str, Tensor]:
        """torchvision's (FCOSHead.compute_loss): focal loss over every point, GIoU loss of the
        decoded boxes and centerness BCE over the foreground, each divided by the foreground count."""
        num_fg = fg.sum().clamp(min=1)
        cls_loss = focal.sum() / num_fg
        pred_boxes = torch.cat([xy - pred_ltrb[..., :2], xy + pred_ltrb[..., 2:]], -1)
        target_boxes = torch.cat([xy - target_ltrb[..., :2], xy + target_ltrb[..., 2:]], -1)
        giou = generalized_box_iou_loss(pred_boxes, target_boxes, reduction="none")
        box_loss = torch.where(fg, giou, 0.0).sum() / num_fg
        target_ctr = torch.where(fg, centerness(target_ltrb), 0.0)
        bce = F.binary_cross_entropy_with_logits(ctr, target_ctr, reduction="none")
        ctr_loss = torch.where(fg, bce, 0.0).sum() / num_fg
        return {"loss_cls": cls_loss, "loss_box": box_loss, "loss_centerness": ctr_loss}

    def _level_candidates(self, logits: Tensor, distances: Tensor, ctr: Tensor, xy: Tensor, stride: int
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One level's best pre_nms_top_n (point, class) pairs per image: boxes (N, k, 4), scores,
        classes and whether each is a detection candidate at all (N, k)."""
        num_classes = logits.shape[-1]
        prob = torch.sigmoid(logits.float())
        score = prob * torch.sigmoid(ctr.float())[..., None]  # (N, HW, K)
        if self.score_rule == "simpledet":
            # SimpleDet's get_proposal_single_stage: the class probabilities above the threshold;
            # where a level has pre_nms_top_n of them, the top pre_nms_top_n of all points by score
            passed = prob > self.score_thresh
            enough = passed.flatten(1).sum(1) >= self.pre_nms_top_n
            key = torch.where(passed | enough[:, None, None], score, -1.0).flatten(1)
        else:
            score = torch.sqrt(score)
            key = torch.where(score > self.score_thresh, score, -1.0).flatten(1)
        top_key, top_idx = key.topk(min(self.pre_nms_top_n, key.shape[1]), dim=1)
        point_idx = torch.div(top_idx, num_classes, rounding_mode="floor")
        ltrb = self._pixels(torch.gather(distances.float(), 1, point_idx[..., None].expand(-1, -1, 4)), stride)
        at = xy[point_idx]
        boxes = torch.cat([at - ltrb[..., :2], at + ltrb[..., 2:]], -1)
        scores = torch.sqrt(top_key.clamp(1e-20, 1.0)) if self.score_rule == "simpledet" else top_key
        return boxes, scores, top_idx % num_classes, top_key >= 0

    @torch.no_grad()
    def postprocess(self, outputs: tuple[list[Tensor], list[Tensor], list[Tensor]], points: FCOSPoints,
                    sizes: ImageSizes) -> list[dict]:
        """Per level, the best pre_nms_top_n candidates; then per image all levels together: clip,
        per-class NMS, the best detections_per_img. Scores are sqrt(class probability x centerness)."""
        per_level = [self._level_candidates(*level, xy, stride)
                     for *level, xy, stride in zip(*outputs, points.levels, self.strides)]
        boxes, scores, classes, candidate = (torch.cat(parts, 1) for parts in zip(*per_level))
        results = []
        for img_boxes, img_scores, img_classes, keep, size in zip(boxes, scores, classes, candidate, sizes.resized):
            img_boxes = clip_boxes_to_image(img_boxes[keep], size)
            img_scores, img_classes = img_scores[keep], img_classes[keep]
            if self.score_rule == "simpledet":
                # SimpleDet drops a box with neither width nor height after clipping
                kept = (img_boxes[:, 0] < img_boxes[:, 2]) | (img_boxes[:, 1] < img_boxes[:, 3])
                img_boxes, img_scores, img_classes = img_boxes[kept], img_scores[kept], img_classes[kept]
            keep = nms_per_label(img_boxes, img_scores, img_classes, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": img_boxes[keep], "scores": img_scores[keep],
                            "labels": img_classes[keep] + self.label_offset})
        return results


@dataclass
class FCOSHeadConfig:
    """SimpleDet's FCOS (config/fcos_r50v1_fpn_1x.py, models/FCOS) by default: P3-P7 at strides
    8-128, 4 convs per tower with GroupNorm 32 per level, centerness on the classification tower,
    exp(s_l x) pixel distances, points at stride centres; a level takes the objects whose largest
    point-to-side distance is in [0, 64), [64, 128), ... [512, inf); focal loss (0.25, 2), IoU loss
    and centerness BCE; at test time the class probabilities above 0.05, the top 1000 per level,
    per-class NMS 0.6, 100 detections.

    torchvision's fcos_resnet50_fpn: norm_per_level=False, centerness_on_box_tower=True,
    exp_distances=False, point_offset=0, spacing_from_padded=True, background_column=True,
    assign_rule / loss_rule / score_rule "torchvision" (centre sampling 1.5; GIoU loss; the score
    sqrt(p x centerness) above 0.2)."""

    in_features: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    num_convs: int = 4
    num_groups: int = 32
    prior_prob: float = 0.01
    norm_per_level: bool = True
    centerness_on_box_tower: bool = False
    # exp(s_l x) in pixels with a learned s_l per level (SimpleDet); relu(x) in strides otherwise
    exp_distances: bool = True
    # where a level's first point sits, in strides from the corner (SimpleDet 0.5, torchvision 0)
    point_offset: float = 0.5
    # points spaced by padded size // feature size (torchvision's anchors) rather than the stride
    spacing_from_padded: bool = False
    background_column: bool = False
    assign_rule: str = "simpledet"
    # the largest point-to-side distance at which one level hands over to the next
    size_bounds: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
    center_sampling_radius: float = 1.5  # torchvision's assign_rule only
    loss_rule: str = "simpledet"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    score_rule: str = "simpledet"
    pre_nms_top_n: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    # the convs' biases train at this x the lr, with this weight decay (None: train.weight_decay);
    # SimpleDet's FCOS head: 2x, no decay (its lr_mult / wd_mult)
    bias_lr_mult: float = 2.0
    bias_weight_decay: float | None = 0.0

    def build(self, in_channels: int, num_classes: int) -> FCOSHead:
        for name in ("assign_rule", "loss_rule", "score_rule"):
            if getattr(self, name) not in RULES:
                raise ValueError(f"model.head.{name} must be one of {RULES}, got {getattr(self, name)!r}")
        if len(self.strides) != len(self.in_features):
            raise ValueError(f"model.head.strides has {len(self.strides)} levels, in_features {len(self.in_features)}")
        if len(self.size_bounds) != len(self.in_features) - 1 or list(self.size_bounds) != sorted(self.size_bounds):
            raise ValueError(f"model.head.size_bounds must be {len(self.in_features) - 1} increasing distances "
                             f"(one between each two levels), got {self.size_bounds}")
        if in_channels % self.num_groups:
            raise ValueError(f"model.head.num_groups ({self.num_groups}) must divide the {in_channels} channels")
        return FCOSHead(
            in_channels=in_channels, num_outputs=num_classes + (1 if self.background_column else 0),
            in_features=self.in_features, strides=self.strides, num_convs=self.num_convs,
            num_groups=self.num_groups, prior_prob=self.prior_prob, norm_per_level=self.norm_per_level,
            centerness_on_box_tower=self.centerness_on_box_tower, exp_distances=self.exp_distances,
            point_offset=self.point_offset, spacing_from_padded=self.spacing_from_padded,
            label_offset=0 if self.background_column else 1, assign_rule=self.assign_rule,
            size_bounds=self.size_bounds, center_sampling_radius=self.center_sampling_radius,
            loss_rule=self.loss_rule, focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma,
            score_rule=self.score_rule, pre_nms_top_n=self.pre_nms_top_n, score_thresh=self.score_thresh,
            nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img, bias_lr_mult=self.bias_lr_mult,
            bias_weight_decay=self.bias_weight_decay)
