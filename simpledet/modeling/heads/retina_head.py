"""RetinaNet's head: a classification and a box subnet (four 3x3 convs each) shared by every
pyramid level (`forward`), sigmoid focal loss over all anchors (`losses`), and per-level top-k
decoding with NMS (`postprocess`); the detector calls all three.

Anchors: 3 scales x 3 ratios per location. SimpleDet's scales are 2^(0, 1/3, 2/3) times an
octave base of 4 strides (32, 40.3, 50.8 px on P3); torchvision truncates them to whole pixels.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, sigmoid_focal_loss

from simpledet.modeling.anchors import AnchorGenerator, Anchors
from simpledet.modeling.box_coder import BoxCoder, matched_box_targets
from simpledet.modeling.box_iou import batched_box_iou
from simpledet.modeling.matcher import FOREGROUND, IGNORE, Matcher
from simpledet.modeling.nms import nms_per_label
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes


def retina_anchor_sizes(strides: tuple[int, ...] = (8, 16, 32, 64, 128), octave_base: float = 4.0,
                        scales_per_octave: int = 3) -> tuple[tuple[float, ...], ...]:
    """SimpleDet's anchor sizes per level: octave_base * stride * 2^(i / scales_per_octave)."""
    return tuple(tuple(octave_base * s * 2 ** (i / scales_per_octave) for i in range(scales_per_octave))
                 for s in strides)


class Subnet(nn.Module):
    """num_convs 3x3 conv + ReLU layers, then a 3x3 conv with `outputs_per_anchor` channels per anchor."""

    def __init__(self, *, channels: int, num_anchors: int, outputs_per_anchor: int, num_convs: int,
                 bias_init: float) -> None:
        super().__init__()
        self.outputs_per_anchor = outputs_per_anchor
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_convs))
        self.pred = nn.Conv2d(channels, num_anchors * outputs_per_anchor, 3, padding=1)
        for conv in [*self.convs, self.pred]:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.pred.bias, bias_init)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Per level (N, H*W*A, outputs_per_anchor), ordered (y, x, anchor) like the anchors."""
        outs = []
        for x in features:
            for conv in self.convs:
                x = F.relu(conv(x), inplace=True)
            x = self.pred(x)
            n, _, h, w = x.shape
            # channels are anchor-major (A, K), as in SimpleDet and torchvision
            outs.append(x.view(n, -1, self.outputs_per_anchor, h, w).permute(0, 3, 4, 1, 2)
                        .reshape(n, -1, self.outputs_per_anchor))
        return outs


class RetinaHead(nn.Module):
    """On FPN features: class logits and box deltas per anchor; their losses in training,
    detections (boxes, scores, labels) at inference."""

    def __init__(self, cls_subnet: Subnet, box_subnet: Subnet, anchor_generator: AnchorGenerator, *,
                 in_features: tuple[str, ...], background_column: bool, fg_iou: float, bg_iou: float,
                 focal_alpha: float, focal_gamma: float, box_loss: str, box_loss_beta: float,
                 box_weights: tuple[float, float, float, float], pre_nms_top_n: int, score_thresh: float,
                 nms_thresh: float, detections_per_img: int) -> None:
        super().__init__()
        if box_loss not in ("smooth_l1", "l1"):
            raise ValueError(f"box_loss must be 'smooth_l1' or 'l1', got {box_loss!r}")
        self.cls_subnet = cls_subnet
        self.box_subnet = box_subnet
        self.anchor_generator = anchor_generator
        self.in_features = tuple(in_features)
        # column j of the classifier is label j + 1, or label j with torchvision's extra column 0
        self.label_offset = 0 if background_column else 1
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)
        self.box_coder = BoxCoder(box_weights)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_loss = box_loss
        self.box_loss_beta = box_loss_beta
        self.pre_nms_top_n = pre_nms_top_n
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def forward(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: class logits (N, H*W*A, K) and box deltas (N, H*W*A, 4)."""
        levels = [features[name] for name in self.in_features]
        return self.cls_subnet(levels), self.box_subnet(levels)

    def anchors(self, features: dict[str, Tensor], sizes: ImageSizes) -> Anchors:
        feature_sizes = [features[name].shape[-2:] for name in self.in_features]
        return self.anchor_generator(sizes.padded, feature_sizes, features[self.in_features[0]].device)

    def losses(self, outputs: tuple[list[Tensor], list[Tensor]], anchors: Anchors, gt: PaddedGroundTruth
               ) -> dict[str, Tensor]:
        """Focal loss over every anchor that is not ignored, box loss over the foreground; both
        summed over the batch and divided by its number of foreground anchors (SimpleDet).

        Masked sums over all anchors, not sums over the anchors picked by boolean indexing: the
        same sums (up to the order of addition) without the four waits for the GPU that indexing
        costs, so a training step never waits (with train.cuda_graphs, RetinaNet's whole step is
        queued ahead of the device)."""
        anchors = anchors.all
        logits, deltas = (torch.cat(levels, 1) for levels in outputs)
        matched, labels = self.matcher(batched_box_iou(gt.boxes, anchors), gt.valid)
        fg = labels == FOREGROUND
        num_fg = fg.sum().clamp(min=1)

        logits, deltas = logits.float(), deltas.float()  # losses in fp32 under mixed precision
        num_columns = logits.shape[-1]
        # each foreground anchor's class column; everything else points one past the last column,
        # which is cut off: one-hot targets without finding the foreground first
        column = torch.gather(gt.labels, 1, matched) - self.label_offset
        column = torch.where(fg, column, num_columns)
        cls_targets = logits.new_zeros((*logits.shape[:-1], num_columns + 1))
        cls_targets = cls_targets.scatter_(2, column[..., None], 1.0)[..., :num_columns]
        focal = sigmoid_focal_loss(logits, cls_targets, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                   reduction="none").sum(-1)
        cls_loss = torch.where(labels != IGNORE, focal, 0.0).sum() / num_fg

        target_deltas = matched_box_targets(self.box_coder, anchors, gt.boxes, matched, fg)
        if self.box_loss == "l1":
            box_loss = F.l1_loss(deltas, target_deltas, reduction="none")
        else:
            box_loss = F.smooth_l1_loss(deltas, target_deltas, beta=self.box_loss_beta, reduction="none")
        box_loss = torch.where(fg, box_loss.sum(-1), 0.0).sum()
        return {"loss_cls": cls_loss, "loss_box": box_loss / num_fg}

    @torch.no_grad()
    def postprocess(self, outputs: tuple[list[Tensor], list[Tensor]], anchors: Anchors,
                    sizes: ImageSizes) -> list[dict]:
        """Per level, the top pre_nms_top_n (anchor, class) pairs above score_thresh; then per image
        all levels together: clip, per-class NMS, the best detections_per_img."""
        logits, deltas = outputs
        boxes, scores, classes = [], [], []
        for level_logits, level_deltas, level_anchors in zip(logits, deltas, anchors.levels):
            num_classes = level_logits.shape[-1]
            level_scores = torch.sigmoid(level_logits.float()).flatten(1)  # (N, H*W*A*K)
            k = min(self.pre_nms_top_n, level_scores.shape[1])
            top_scores, top_idx = level_scores.topk(k, dim=1)
            anchor_idx = torch.div(top_idx, num_classes, rounding_mode="floor")
            picked = torch.gather(level_deltas.float(), 1, anchor_idx[..., None].expand(-1, -1, 4))
            boxes.append(self.box_coder.decode(picked, level_anchors[anchor_idx])[:, :, 0])
            scores.append(top_scores)
            classes.append(top_idx % num_classes)
        boxes, scores, classes = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(classes, 1)

        results = []
        for img_boxes, img_scores, img_classes, size in zip(boxes, scores, classes, sizes.resized):
            keep = img_scores > self.score_thresh
            img_boxes = clip_boxes_to_image(img_boxes[keep], size)
            img_scores, img_classes = img_scores[keep], img_classes[keep]
            keep = nms_per_label(img_boxes, img_scores, img_classes, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": img_boxes[keep], "scores": img_scores[keep],
                            "labels": img_classes[keep] + self.label_offset})
        return results


@dataclass
class RetinaHeadConfig:
    """SimpleDet's RetinaNet (config/retina_r50v1_fpn_1x.py): P3-P7, 9 anchors per location, IoU
    >= 0.5 foreground and < 0.4 background (plus each object's best anchors), focal loss alpha 0.25
    gamma 2, smooth L1 box loss with beta 0.11, unnormalised deltas; at test time the top 1000 per
    level above score 0.05, per-class NMS 0.5, 100 detections.

    background_column: torchvision's classifier also has a column for label 0 (never a target);
    True keeps that layout (num_classes + 1 outputs, column j is label j) so its checkpoints load.
    box_loss: "smooth_l1" (SimpleDet) or "l1" (torchvision)."""

    in_features: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
    anchor_sizes: tuple[tuple[float, ...], ...] = retina_anchor_sizes()
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    num_convs: int = 4
    prior_prob: float = 0.01
    background_column: bool = False
    fg_iou: float = 0.5
    bg_iou: float = 0.4
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss: str = "smooth_l1"
    box_loss_beta: float = 0.11
    box_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    pre_nms_top_n: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def build(self, in_channels: int, num_classes: int) -> RetinaHead:
        if len(self.anchor_sizes) != len(self.in_features):
            raise ValueError(f"anchor_sizes has {len(self.anchor_sizes)} levels, in_features {len(self.in_features)}")
        anchors = AnchorGenerator(self.anchor_sizes, (self.aspect_ratios,) * len(self.anchor_sizes))
        num_anchors = anchors.num_anchors_per_location[0]
        num_outputs = num_classes + (1 if self.background_column else 0)
        # the classifier starts at `prior_prob` for every class, so the many easy negatives do not
        # swamp the first iterations (Lin et al., 2017)
        prior_bias = -math.log((1 - self.prior_prob) / self.prior_prob)
        cls_subnet = Subnet(channels=in_channels, num_anchors=num_anchors, outputs_per_anchor=num_outputs,
                            num_convs=self.num_convs, bias_init=prior_bias)
        box_subnet = Subnet(channels=in_channels, num_anchors=num_anchors, outputs_per_anchor=4,
                            num_convs=self.num_convs, bias_init=0.0)
        return RetinaHead(cls_subnet, box_subnet, anchors, in_features=self.in_features,
                          background_column=self.background_column, fg_iou=self.fg_iou, bg_iou=self.bg_iou,
                          focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma, box_loss=self.box_loss,
                          box_loss_beta=self.box_loss_beta, box_weights=self.box_weights,
                          pre_nms_top_n=self.pre_nms_top_n, score_thresh=self.score_thresh,
                          nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img)
