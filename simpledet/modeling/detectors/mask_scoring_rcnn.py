"""Mask Scoring R-CNN (SimpleDet's models/msrcnn): Mask R-CNN whose R-CNN stage also predicts how
good each mask is, and scores masks by it.

The R-CNN stage adds a MaskIoU head (simpledet/modeling/heads/maskiou_head.py) after the mask
branch. Training: on the mask branch's foreground RoIs, the head reads their pooled features and
their class's mask probabilities (not detached: SimpleDet lets this loss reach the mask head) and
regresses the IoU of the binarised mask with the object. Inference: each detection gets
`mask_scores` = its classification score x the predicted IoU of its class; `eval` ranks masks by
them for mask AP, boxes keep the classification score for box AP (SimpleDet's mask_test.py).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from simpledet.accel.roi_bucket import run_bucketed
from simpledet.modeling.detectors.mask_rcnn import MaskRCNNConfig
from simpledet.modeling.heads.mask_head import class_mask_probs, mask_loss, mask_targets
from simpledet.modeling.heads.maskiou_head import (
    MaskIoUHeadConfig,
    mask_area_ratio,
    mask_scores,
    maskiou_input,
    maskiou_loss,
    maskiou_targets,
)
from simpledet.modeling.heads.roi_heads import RoIHeads, RoIHeadsConfig, SampledRoIs
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes


class MaskScoringRoIHeads(RoIHeads):
    """The R-CNN stage of Mask R-CNN with the MaskIoU head after its mask branch."""

    def __init__(self, *args, maskiou_head: nn.Module, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.maskiou_head = maskiou_head

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], sizes: ImageSizes,
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, sizes, targets, gt)  # add_masks adds the mask scores
        if targets is None:
            raise ValueError("targets are needed in training mode")
        sampled = self.sample_proposals(proposals, targets, gt)
        losses, _ = self.sampled_losses(features, sampled, sizes)
        losses["loss_mask"], losses["loss_maskiou"] = self.mask_scoring_losses(features, sampled, sizes, targets)
        return [], losses

    def mask_scoring_losses(self, features: dict[str, Tensor], sampled: SampledRoIs, sizes: ImageSizes,
                            targets: list[dict]) -> tuple[Tensor, Tensor]:
        """The mask branch's loss and the MaskIoU head's, on the foreground RoIs among the sampled."""
        # the foreground RoIs of every image, with one wait for their per-image counts (as mask_losses)
        is_fg = sampled.classes > 0
        per_image = torch.stack([f.sum() for f in is_fg.split([len(b) for b in sampled.boxes])]).tolist()
        fg = torch.nonzero_static(is_fg, size=sum(per_image)).squeeze(1)
        rois = list(torch.cat(sampled.boxes)[fg].split(per_image))
        gt_index = list(sampled.matched_gt[fg].split(per_image))
        labels = sampled.classes[fg]
        pooled = self.mask_pooler(features, rois, sizes.resized)
        logits = self.run_head(self.mask_head, pooled)
        gt_masks = [t["masks"].to(logits.device) for t in targets]
        goal = mask_targets(gt_masks, rois, gt_index, sizes.to_original, logits.shape[-1])
        probs = class_mask_probs(logits, labels)
        predicted_iou = self.run_head(self.maskiou_head, maskiou_input(pooled, probs))
        iou_goal = maskiou_targets(probs[:, 0].detach(), goal,
                                   mask_area_ratio(gt_masks, rois, gt_index, sizes.to_original))
        return mask_loss(logits, labels, goal), maskiou_loss(predicted_iou, labels, iou_goal)

    def add_masks(self, features: dict[str, Tensor], detections: list[dict], sizes: ImageSizes) -> None:
        """Adds `masks` (n, 1, 28, 28) probabilities and `mask_scores` (n,) to each image's detections."""
        boxes = [d["boxes"] for d in detections]
        pooled = self.mask_pooler(features, boxes, sizes.resized)
        logits = self.run_head(self.mask_head, pooled)
        labels = torch.cat([d["labels"] for d in detections])
        probs = class_mask_probs(logits, labels)
        predicted_iou = self.run_head(self.maskiou_head, maskiou_input(pooled, probs))
        scores = mask_scores(predicted_iou, labels, torch.cat([d["scores"] for d in detections]))
        counts = [b.shape[0] for b in boxes]
        for det, masks, score in zip(detections, probs.split(counts), scores.split(counts)):
            det["masks"] = masks
            det["mask_scores"] = score


@dataclass
class MaskScoringRCNNConfig(MaskRCNNConfig):
    """Mask R-CNN's parts plus the MaskIoU head: SimpleDet's ms configs are its mask configs with
    MaskIoUConvHead added, nothing else changed."""

    maskiou_head: MaskIoUHeadConfig = field(default_factory=MaskIoUHeadConfig)
    predicts_mask_scores: ClassVar[bool] = True

    @classmethod
    def from_mask(cls, mask: MaskRCNNConfig, maskiou_head: MaskIoUHeadConfig | None = None
                  ) -> "MaskScoringRCNNConfig":
        parts = {f.name: getattr(mask, f.name) for f in dataclasses.fields(MaskRCNNConfig)}
        return cls(**parts, maskiou_head=maskiou_head if maskiou_head is not None else MaskIoUHeadConfig())

    def build_roi_heads(self, channels: dict[str, int]) -> nn.Module:
        if self.neck is None:
            raise ValueError("Mask Scoring R-CNN is built on FPN features: model.neck must be set")
        if not isinstance(self.roi_heads, RoIHeadsConfig):
            raise ValueError("Mask Scoring R-CNN's mask branch joins a single R-CNN stage (RoIHeadsConfig)")
        in_channels = channels[self.roi_heads.in_features[0]]
        maskiou_head = self.maskiou_head.build(in_channels, self.mask_head.pooler_resolution, self.num_classes)
        return self.roi_heads.build(in_channels, self.num_classes, run_head=run_bucketed, mask=self.mask_head,
                                    heads=MaskScoringRoIHeads, maskiou_head=maskiou_head)
