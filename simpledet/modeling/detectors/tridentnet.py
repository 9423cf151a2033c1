"""TridentNet (and TridentFast): a C4 Faster R-CNN whose stage-4 output comes in three branches.

Each branch is trained on the objects of its own scale range (scale-aware training: ground truth
and proposals outside the branch's valid range, measured on the original image, are left out).
At test time each branch keeps the detections in its range and the branches are merged by
per-class NMS. TridentFast runs only the middle branch (dilation 2) and keeps everything.
"""

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from simpledet.accel.concurrent_nms import concurrent_nms
from simpledet.accel.roi_bucket import run_bucketed
from simpledet.accel.sync_free import true_indices
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.backbones.trident import TridentBackbone
from simpledet.modeling.detectors.detector import DetectorConfig
from simpledet.modeling.detectors.two_stage import TwoStageDetector
from simpledet.modeling.heads.res5_head import Res5HeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.nms import class_nms
from simpledet.structures.ground_truth import PaddedGroundTruth


def in_range(boxes: Tensor, scale: float, low: float, high: float) -> Tensor:
    """Boxes whose size sqrt(w * h), measured on the original image, lies in [low, high]."""
    size = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt() / scale
    return (size >= low) & (size <= high)


class TridentDetector(TwoStageDetector):
    def __init__(self, *, valid_ranges: tuple[tuple[float, float], ...], train_scale_aware: bool,
                 test_scale_aware: bool, merge_nms_thresh: float, detections_per_img: int, **parts) -> None:
        """parts: TwoStageDetector's arguments, with a TridentBackbone."""
        super().__init__(**parts)
        self.valid_ranges = [(lo, math.inf if hi < 0 else hi) for lo, hi in valid_ranges]
        self.train_scale_aware = train_scale_aware
        self.test_scale_aware = test_scale_aware
        self.merge_nms_thresh = merge_nms_thresh
        self.detections_per_img = detections_per_img

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.backbone.body, *self.roi_heads.pretrained_modules()]  # the ResNet inside the branches

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        self.check_inputs(images, targets)
        batch, sizes, targets = self.preprocess(images, targets)
        scales = [r[0] / o[0] for r, o in zip(sizes.resized, sizes.original)]
        features, rpn_outputs = self.dense_step(batch)
        branches = self.backbone.active_branches
        branch_sizes = sizes.repeat(len(branches))  # branch-major, as the backbone stacks them
        anchors = self.rpn.anchors(features, branch_sizes)
        targets_b = gt = None
        losses = {}
        if self.training:
            targets_b = self.branch_targets(targets, scales, branches)
            gt = PaddedGroundTruth.of(targets_b, batch.device)  # once, for both stages
            losses = self.rpn.losses(rpn_outputs, anchors, gt, branch_sizes)
        proposals = self.rpn.postprocess(rpn_outputs, anchors, branch_sizes)
        if self.training and self.train_scale_aware:  # proposal i belongs to branch i // B, image i % B
            keep = true_indices([in_range(p, scales[i % len(images)], *self.valid_ranges[branches[i // len(images)]])
                                 for i, p in enumerate(proposals)])
            proposals = [p[k] for p, k in zip(proposals, keep)]
        detections, roi_losses = self.roi_heads(features, proposals, branch_sizes, targets_b, gt)
        if self.training:
            return {**losses, **roi_losses}
        return self.preprocess.postprocess(self.merge(detections, branches, scales, len(images)), sizes)

    def branch_targets(self, targets: list[dict], scales: list[float], branches: tuple[int, ...]) -> list[dict]:
        """Each branch's targets, branch-major: with scale-aware training, the objects in its
        range. Their rows are found with one wait for the device in all (true_indices): this runs
        before the heads, where a wait stalls the host until the device has run the backbone."""
        if not self.train_scale_aware:
            return [t for _ in branches for t in targets]
        pairs = [(t, scale, b) for b in branches for t, scale in zip(targets, scales)]
        keep = true_indices([in_range(t["boxes"], scale, *self.valid_ranges[b]) for t, scale, b in pairs])
        return [{**t, "boxes": t["boxes"][k], "labels": t["labels"][k]} for (t, _, _), k in zip(pairs, keep)]

    def merge(self, detections: list[dict], branches: tuple[int, ...], scales: list[float], num_images: int):
        """Each image's detections from every branch (those in the branch's range, with
        scale-aware testing), merged by per-class NMS."""
        merged = []
        for i in range(num_images):
            parts = [detections[k * num_images + i] for k in range(len(branches))]
            if self.test_scale_aware:
                keep = [in_range(d["boxes"], scales[i], *self.valid_ranges[b]) for d, b in zip(parts, branches)]
                parts = [{key: value[k] for key, value in d.items()} for d, k in zip(parts, keep)]
            if len(parts) == 1:
                merged.append(parts[0])
                continue
            boxes = torch.cat([d["boxes"] for d in parts])
            scores = torch.cat([d["scores"] for d in parts])
            labels = torch.cat([d["labels"] for d in parts])
            keep, kept = class_nms(boxes, scores, labels, self.merge_nms_thresh, self.detections_per_img)
            merged.append({"boxes": boxes[keep], "scores": kept, "labels": labels[keep]})
        return merged


@dataclass
class TridentConfig:
    """SimpleDet's Trident class: three branches, dilations 1/2/3, valid ranges in original-image
    pixels (-1: unbounded), weights shared; `test_branches` (1,) makes TridentFast."""

    dilations: tuple[int, ...] = (1, 2, 3)
    num_trident_blocks: int | None = None  # None: every block of stage 4 but the first
    valid_ranges: tuple[tuple[float, float], ...] = ((0.0, 90.0), (30.0, 160.0), (90.0, -1.0))
    train_scale_aware: bool = True
    test_scale_aware: bool = True
    test_branches: tuple[int, ...] = (0, 1, 2)
    # SimpleDet's branch_bn_shared: False gives each branch norms of its own (its scratch configs)
    shared_norms: bool = True
    # SimpleDet's branch_deform: the last `deform_blocks` trident blocks (it uses 3) get a deformable
    # conv2, sampled at each branch's dilation (ResNet v2 only; backbones/trident_v2.py); 0: none
    deform_blocks: int = 0


@dataclass
class TridentNetConfig(DetectorConfig):
    backbone: ResNetConfig | ResNetV2Config = field(default_factory=lambda: ResNetConfig(out_features=("c4",)))
    trident: TridentConfig = field(default_factory=TridentConfig)
    rpn: RPNConfig = field(default_factory=lambda: RPNConfig(
        in_features=("c4",), anchor_sizes=((32, 64, 128, 256, 512),), conv_channels=512,
        pre_nms_top_n_train=12000, pre_nms_top_n_test=6000, post_nms_top_n_train=500, post_nms_top_n_test=300))
    roi_heads: RoIHeadsConfig = field(default_factory=lambda: RoIHeadsConfig(
        in_features=("c4",), box_head=Res5HeadConfig(), class_agnostic=True, batch_size_per_image=128))

    @property
    def final_head(self) -> RoIHeadsConfig:
        return self.roi_heads

    def build(self) -> TridentDetector:
        t = self.trident
        if len(t.valid_ranges) != len(t.dilations):
            raise ValueError("TridentNet needs one valid range per branch")
        backbone = TridentBackbone(self.backbone.build(), dilations=t.dilations,
                                   num_trident_blocks=t.num_trident_blocks, test_branches=t.test_branches,
                                   shared_norms=t.shared_norms, deform_blocks=t.deform_blocks)
        channels = backbone.output_shape()["c4"]
        return TridentDetector(preprocess=self.input.build(), num_classes=self.num_classes, backbone=backbone,
                               neck=None,
                               rpn=self.rpn.build(channels, nms_each=concurrent_nms),
                               roi_heads=self.roi_heads.build(channels, self.num_classes, run_head=run_bucketed),
                               valid_ranges=t.valid_ranges, train_scale_aware=t.train_scale_aware,
                               test_scale_aware=t.test_scale_aware, merge_nms_thresh=self.roi_heads.nms_thresh,
                               detections_per_img=self.roi_heads.detections_per_img)
