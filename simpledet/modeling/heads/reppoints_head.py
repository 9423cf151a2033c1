"""RepPoints' head (Yang et al. 2019; SimpleDet's models/RepPoints/builder.py): objects as sets of
9 points, predicted in two stages on every FPN level, with the convolutions shared by the levels.

forward, per level (channels C, point channels Cp):
  cls_feat = 3 x (3x3 conv C + GroupNorm + ReLU)       reg_feat = the same on its own weights
  pts_init = 1x1 conv 18 (relu(3x3 conv Cp (reg_feat)))      9 (dy, dx) offsets, in strides
  offsets  = 0.9 * detach(pts_init) + 0.1 * pts_init - the 3x3 kernel's own taps
  cls      = 1x1 conv K (relu(3x3 deformable conv Cp (cls_feat, offsets)))
  pts_refine = 1x1 conv 18 (relu(3x3 deformable conv Cp (reg_feat, offsets))) + detach(pts_init)
so the deformable kernels sample the features at the initial points themselves, and the initial
points learn from their own loss with only a tenth of the refining stage's gradient. The GroupNorm
layers are per level (SimpleDet names them `cls_conv1_gn_s8`, ...); the convolutions are shared.

Point k of a cell (x, y, stride) is (x + dx_k * stride, y + dy_k * stride); its channels are
(dy, dx) pairs, the deformable convolution's offset layout. Boxes come from the points by min-max
or the moment transform (simpledet/modeling/reppoints_targets.py).

losses (SimpleDet's, each normalised by the batch's foreground count + 1):
  initial points: smooth L1 (beta 1/9, SimpleDet's sigma 3) between their box and the object a
    point assignment gives, each coordinate divided by 4 x stride; weight 0.5.
  refined points: the same against the object a max-IoU assignment of the initial boxes gives; weight 1.
  classification: sigmoid focal loss against the refining stage's labels (ignored points left out).
postprocess: per level the top pre_nms_top_n points by their best class score; then per image
every (point, class) above score_thresh, clipped, per-class NMS, the best detections_per_img.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d, sigmoid_focal_loss

from simpledet.errors import UserError
from simpledet.modeling.layers.deform_conv import DeformConv2d
from simpledet.modeling.necks.reppoints_fpn import check_norm, make_group_norm
from simpledet.modeling.nms import nms_per_label
from simpledet.modeling.reppoints_targets import (
    TRANSFORMS,
    Points,
    grid_points,
    iou_targets,
    point_targets,
    points_to_boxes,
)
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes


class PointDeformConv(nn.Module):
    """A KxK deformable convolution whose offsets are given (the points), not computed from its
    input. It samples the border as MXNet's DeformableConvolution does, which SimpleDet's head
    runs (the rule and its rewrite of the offsets are DeformConv2d's, unmodulated form)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.stride, self.padding, self.dilation = (1, 1), (kernel_size // 2,) * 2, (1, 1)

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        # same attributes as DeformConv2d (weight, stride, padding, dilation): its border rewrite applies as is
        offset = DeformConv2d._mxnet_v1_offsets(self, offset, x.shape[-2], x.shape[-1])
        dtype = self.weight.dtype  # fp32 under autocast, as DeformConv2d
        return deform_conv2d(x.to(dtype), offset.to(dtype), self.weight, self.bias, self.stride, self.padding,
                             self.dilation)


def _norms(channels: int, num_levels: int, num_convs: int, norm: str, groups: int) -> nn.ModuleList:
    """One GroupNorm per (level, conv), indexed [level][conv], or identities."""
    return nn.ModuleList(nn.ModuleList(make_group_norm(norm, channels, groups) for _ in range(num_convs))
                         for _ in range(num_levels))


class RepPointsHead(nn.Module):
    def __init__(self, *, in_channels: int, num_classes: int, in_features: tuple[str, ...], strides: tuple[int, ...],
                 conv_channels: int, point_channels: int, num_convs: int, norm: str, norm_groups: int, num_points: int,
                 transform: str, gradient_mul: float, moment_lr_mult: float, prior_prob: float,
                 point_scale: float, point_num_pos: int, pos_iou: float, neg_iou: float, min_pos_iou: float,
                 loss_normalizer_scale: float, focal_alpha: float, focal_gamma: float, box_loss_beta: float,
                 init_loss_weight: float, refine_loss_weight: float, pre_nms_top_n: int, score_thresh: float,
                 nms_thresh: float, detections_per_img: int) -> None:
        super().__init__()
        kernel = math.isqrt(num_points)  # RepPointsHeadConfig.check: an odd square
        self.in_features, self.strides = tuple(in_features), tuple(strides)
        self.num_points, self.transform = num_points, transform
        self.gradient_mul, self.moment_lr_mult = gradient_mul, moment_lr_mult
        self.point_scale, self.point_num_pos = point_scale, point_num_pos
        self.pos_iou, self.neg_iou, self.min_pos_iou = pos_iou, neg_iou, min_pos_iou
        self.loss_normalizer_scale = loss_normalizer_scale
        self.focal_alpha, self.focal_gamma, self.box_loss_beta = focal_alpha, focal_gamma, box_loss_beta
        self.init_loss_weight, self.refine_loss_weight = init_loss_weight, refine_loss_weight
        self.pre_nms_top_n, self.score_thresh = pre_nms_top_n, score_thresh
        self.nms_thresh, self.detections_per_img = nms_thresh, detections_per_img

        def convs(c_in: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(c_in if i == 0 else conv_channels, conv_channels, 3, padding=1)
                                 for i in range(num_convs))
        self.cls_convs, self.reg_convs = convs(in_channels), convs(in_channels)
        self.cls_norms = _norms(conv_channels, len(in_features), num_convs, norm, norm_groups)
        self.reg_norms = _norms(conv_channels, len(in_features), num_convs, norm, norm_groups)
        self.pts_init_conv = nn.Conv2d(conv_channels, point_channels, 3, padding=1)
        self.pts_init_out = nn.Conv2d(point_channels, 2 * num_points, 1)
        self.cls_conv = PointDeformConv(conv_channels, point_channels, kernel)
        self.cls_out = nn.Conv2d(point_channels, num_classes, 1)
        self.pts_refine_conv = PointDeformConv(conv_channels, point_channels, kernel)
        self.pts_refine_out = nn.Conv2d(point_channels, 2 * num_points, 1)
        if transform == "moment":
            # (tw, th): half sizes are std x exp(t); zero at the start (SimpleDet's moment_transfer)
            self.moment_transfer = nn.Parameter(torch.zeros(2))
        # the kernel's own taps (dy, dx), row-major: subtracted so the deformable conv samples at the points
        taps = torch.arange(kernel, dtype=torch.float32) - kernel // 2
        base = torch.stack(torch.meshgrid(taps, taps, indexing="ij"), dim=-1).reshape(1, -1, 1, 1)
        self.register_buffer("base_offset", base, persistent=False)
        for m in self.modules():  # SimpleDet: N(0, 0.01) weights, zero biases
            if isinstance(m, (nn.Conv2d, PointDeformConv)):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per level: class logits (N, K, H, W), initial and refined points (N, 2 * num_points, H, W)."""
        cls_outs, inits, refines = [], [], []
        for level, name in enumerate(self.in_features):
            cls_feat = reg_feat = features[name]
            for conv, norm in zip(self.cls_convs, self.cls_norms[level]):
                cls_feat = F.relu(norm(conv(cls_feat)), inplace=True)
            for conv, norm in zip(self.reg_convs, self.reg_norms[level]):
                reg_feat = F.relu(norm(conv(reg_feat)), inplace=True)
            pts_init = self.pts_init_out(F.relu(self.pts_init_conv(reg_feat), inplace=True))
            # the refining stage passes back gradient_mul of its gradient to the initial points
            scaled = (1 - self.gradient_mul) * pts_init.detach() + self.gradient_mul * pts_init
            offset = scaled - self.base_offset.to(scaled.dtype)
            cls_outs.append(self.cls_out(F.relu(self.cls_conv(cls_feat, offset), inplace=True)))
            refine = self.pts_refine_out(F.relu(self.pts_refine_conv(reg_feat, offset), inplace=True))
            refines.append(refine + pts_init.detach())
            inits.append(pts_init)
        return cls_outs, inits, refines

    def anchors(self, features: dict[str, Tensor], sizes: ImageSizes) -> Points:
        """Each level's cells as points (x, y, stride): what the predicted offsets are relative to."""
        device = features[self.in_features[0]].device
        levels = [grid_points(*features[name].shape[-2:], stride, device)
                  for name, stride in zip(self.in_features, self.strides)]
        return Points(levels, torch.cat(levels))

    def _moment_transfer(self) -> Tensor | None:
        if self.transform != "moment":
            return None
        # SimpleDet gives moment_transfer lr_mult 0.01: the same step under SGD as a gradient x 0.01
        mt = self.moment_transfer.float()
        return (1 - self.moment_lr_mult) * mt.detach() + self.moment_lr_mult * mt

    def point_coordinates(self, offsets: list[Tensor], points: Points) -> Tensor:
        """Per-level (N, 2P, H, W) offsets in (dy, dx) pairs -> (N, sum HW, P, 2) image (x, y)."""
        out = []
        for off, level_points in zip(offsets, points.levels):
            n = off.shape[0]
            pts = off.float().permute(0, 2, 3, 1).reshape(n, -1, self.num_points, 2).flip(-1)
            out.append(pts * level_points[:, None, 2:] + level_points[:, None, :2])
        return torch.cat(out, 1)

    def losses(self, outputs: tuple[list[Tensor], list[Tensor], list[Tensor]], points: Points,
               gt: PaddedGroundTruth) -> dict[str, Tensor]:
        """Masked sums over every point (no boolean indexing: no wait for the device)."""
        cls_outs, inits, refines = outputs
        mt = self._moment_transfer()
        init_pts = self.point_coordinates(inits, points)
        refine_pts = self.point_coordinates(refines, points)
        init_boxes = points_to_boxes(init_pts, self.transform, mt)
        refine_boxes = points_to_boxes(refine_pts, self.transform, mt)
        # the refining stage is assigned by the initial points' boxes, without their gradient
        proposals = points_to_boxes(init_pts.detach(), self.transform, None if mt is None else mt.detach())
        init_labels, init_targets = point_targets(points.all, gt, self.point_scale, self.point_num_pos)
        labels, refine_targets = iou_targets(proposals, gt, self.pos_iou, self.neg_iou, self.min_pos_iou)
        normalizer = points.all[:, 2:] * self.loss_normalizer_scale  # (P, 1): 4 x stride

        def box_loss(boxes: Tensor, targets: Tensor, point_labels: Tensor) -> Tensor:
            fg = point_labels > 0
            loss = F.smooth_l1_loss(boxes / normalizer, targets / normalizer, beta=self.box_loss_beta,
                                    reduction="none").sum(-1)
            return torch.where(fg, loss, 0.0).sum() / (fg.sum() + 1)

        logits = torch.cat([c.float().permute(0, 2, 3, 1).reshape(c.shape[0], -1, c.shape[1]) for c in cls_outs], 1)
        num_classes = logits.shape[-1]
        # one-hot targets: background and ignored points point one past the last column, which is cut off
        column = torch.where(labels > 0, labels - 1, num_classes)
        cls_targets = logits.new_zeros((*logits.shape[:-1], num_classes + 1))
        cls_targets = cls_targets.scatter_(2, column[..., None], 1.0)[..., :num_classes]
        focal = sigmoid_focal_loss(logits, cls_targets, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                   reduction="none").sum(-1)
        cls_loss = torch.where(labels >= 0, focal, 0.0).sum() / ((labels > 0).sum() + 1)
        return {"loss_cls": cls_loss,
                "loss_pts_init": self.init_loss_weight * box_loss(init_boxes, init_targets, init_labels),
                "loss_pts_refine": self.refine_loss_weight * box_loss(refine_boxes, refine_targets, labels)}

    @torch.no_grad()
    def postprocess(self, outputs: tuple[list[Tensor], list[Tensor], list[Tensor]], points: Points,
                    sizes: ImageSizes) -> list[dict]:
        cls_outs, _, refines = outputs
        mt = self._moment_transfer()
        boxes, scores = [], []
        for logits, refine, level_points in zip(cls_outs, refines, points.levels):
            n, k = logits.shape[:2]
            level_scores = torch.sigmoid(logits.float()).permute(0, 2, 3, 1).reshape(n, -1, k)
            top = min(self.pre_nms_top_n, level_scores.shape[1])
            idx = level_scores.amax(-1).topk(top, dim=1).indices  # the points with the best class scores
            pts = self.point_coordinates([refine], Points([level_points], level_points))
            level_boxes = points_to_boxes(torch.gather(pts, 1, idx[..., None, None].expand(-1, -1, *pts.shape[2:])),
                                          self.transform, mt)
            boxes.append(level_boxes)
            scores.append(torch.gather(level_scores, 1, idx[..., None].expand(-1, -1, k)))
        boxes, scores = torch.cat(boxes, 1), torch.cat(scores, 1)
        boxes = torch.minimum(boxes, sizes.limits.to(boxes.device)[:, None]).clamp(min=0)

        results = []
        for img_boxes, img_scores in zip(boxes, scores):
            point_idx, classes = torch.nonzero(img_scores > self.score_thresh, as_tuple=True)
            img_boxes, img_scores = img_boxes[point_idx], img_scores[point_idx, classes]
            keep = nms_per_label(img_boxes, img_scores, classes, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": img_boxes[keep], "scores": img_scores[keep], "labels": classes[keep] + 1})
        return results


@dataclass
class RepPointsHeadConfig:
    """SimpleDet's config/RepPoints/reppoints_moment_r50v1_fpn_1x.py: P3-P7 (strides 8-128), 256
    channels, GroupNorm, 9 points, moment transform; point assignment at scale 4 with 1 point per
    object; max-IoU assignment 0.5 / 0.5 (min_pos_iou 0); focal loss (0.25, 2); smooth L1 beta 1/9
    on coordinates divided by 4 x stride, weights 0.5 (initial) and 1 (refined); test: the top 1000
    points per level, score > 0.05, per-class NMS 0.5, 100 detections.

    transform: "moment" or "minmax" (the zoo's two; "partial_minmax" too). norm: "gn" or "none";
    norm_groups: GroupNorm's groups (SimpleDet: 32).
    gradient_mul: the share of the refining stage's gradient the initial points receive (0.1).
    moment_lr_mult: the learning-rate multiplier of the moment transfer (0.01), as a gradient scale."""

    in_features: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    conv_channels: int = 256
    point_channels: int = 256
    num_convs: int = 3
    norm: str = "gn"
    norm_groups: int = 32
    num_points: int = 9
    transform: str = "moment"
    gradient_mul: float = 0.1
    moment_lr_mult: float = 0.01
    prior_prob: float = 0.01
    point_scale: float = 4.0
    point_num_pos: int = 1
    pos_iou: float = 0.5
    neg_iou: float = 0.5
    min_pos_iou: float = 0.0
    loss_normalizer_scale: float = 4.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss_beta: float = 1.0 / 9
    init_loss_weight: float = 0.5
    refine_loss_weight: float = 1.0
    pre_nms_top_n: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def check(self, key: str = "model.head") -> None:
        """UserError naming the config key of a setting out of its range."""
        kernel = math.isqrt(self.num_points)
        if kernel * kernel != self.num_points or kernel % 2 == 0:
            raise UserError(f"{key}.num_points must be an odd square (9, 25, ...), got {self.num_points}")
        if self.transform not in TRANSFORMS:
            raise UserError(f"{key}.transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")
        if len(self.strides) != len(self.in_features):
            raise UserError(f"{key}.strides {self.strides} and {key}.in_features {self.in_features} differ in length")
        check_norm(self.norm, self.conv_channels, self.norm_groups, key)

    def build(self, in_channels: int, num_classes: int) -> RepPointsHead:
        self.check()
        return RepPointsHead(
            in_channels=in_channels, num_classes=num_classes, in_features=self.in_features, strides=self.strides,
            conv_channels=self.conv_channels, point_channels=self.point_channels, num_convs=self.num_convs,
            norm=self.norm, norm_groups=self.norm_groups, num_points=self.num_points, transform=self.transform,
            gradient_mul=self.gradient_mul,
            moment_lr_mult=self.moment_lr_mult, prior_prob=self.prior_prob, point_scale=self.point_scale,
            point_num_pos=self.point_num_pos, pos_iou=self.pos_iou, neg_iou=self.neg_iou,
            min_pos_iou=self.min_pos_iou, loss_normalizer_scale=self.loss_normalizer_scale,
            focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma, box_loss_beta=self.box_loss_beta,
            init_loss_weight=self.init_loss_weight, refine_loss_weight=self.refine_loss_weight,
            pre_nms_top_n=self.pre_nms_top_n, score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
            detections_per_img=self.detections_per_img)
