"""Cascade R-CNN (Cai & Vasconcelos 2018) as SimpleDet built it: three R-CNN stages, each resampling
its RoIs at a higher IoU (0.5 / 0.6 / 0.7) from the boxes the previous stage refined, with its own
box weights and loss weight (1 / 0.5 / 0.25). At test time the boxes come from the last stage and
the class scores are the mean of all three classifiers applied to the last stage's RoIs."""

import dataclasses
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.modeling.heads.roi_heads import RoIHeads, RoIHeadsConfig, RunHead, run_head_directly
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes


class CascadeRoIHeads(nn.Module):
    def __init__(self, stages: list[RoIHeads], *, loss_weights: tuple[float, ...]) -> None:
        super().__init__()
        if len(stages) != len(loss_weights):
            raise ValueError("one loss weight per cascade stage")
        self.stages = nn.ModuleList(stages)
        self.loss_weights = tuple(loss_weights)

    def rcnn_stages(self) -> list[RoIHeads]:
        return list(self.stages)

    def pretrained_modules(self) -> list[nn.Module]:
        return [module for stage in self.stages for module in stage.pretrained_modules()]

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], sizes: ImageSizes,
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        last = len(self.stages) - 1
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            gt = gt if gt is not None else PaddedGroundTruth.of(targets, proposals[0].device)
            losses = {}
            for i, (stage, weight) in enumerate(zip(self.stages, self.loss_weights)):
                sampled = stage.sample_proposals(proposals, targets, gt)
                stage_losses, deltas = stage.sampled_losses(features, sampled, sizes)
                for name, value in stage_losses.items():
                    losses[f"{name}_stage{i + 1}"] = value * weight
                if i < last:
                    proposals = stage.refine(deltas, sampled.boxes, sizes)
            return [], losses

        for i, stage in enumerate(self.stages):
            logits, deltas = stage.predict(features, proposals, sizes)
            if i < last:
                proposals = stage.refine(deltas, proposals, sizes)
        # every stage's classifier on the last stage's RoIs, averaged (the last one is at hand)
        scores = F.softmax(logits, -1)
        for stage in self.stages[:last]:
            scores = scores + F.softmax(stage.predict(features, proposals, sizes)[0], -1)
        scores = scores / len(self.stages)
        return self.stages[last].postprocess(scores, deltas, proposals, sizes), {}


@dataclass
class CascadeRoIHeadsConfig:
    """SimpleDet's cascade: one R-CNN stage's settings (class-agnostic boxes, 512 RoIs at 25%
    foreground, ...) for every stage, and what differs per stage: the IoU at which a RoI is
    foreground (and below which background), the box weights (SimpleDet's std (0.1, 0.1, 0.2,
    0.2) / (0.05, 0.05, 0.1, 0.1) / (0.033, 0.033, 0.067, 0.067), inverted) and the loss weight."""

    stage: RoIHeadsConfig = field(default_factory=lambda: RoIHeadsConfig(class_agnostic=True))
    fg_ious: tuple[float, ...] = (0.5, 0.6, 0.7)
    box_weights: tuple[tuple[float, float, float, float], ...] = (
        (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (1 / 0.033, 1 / 0.033, 1 / 0.067, 1 / 0.067))
    loss_weights: tuple[float, ...] = (1.0, 0.5, 0.25)

    @property
    def in_features(self) -> tuple[str, ...]:
        return self.stage.in_features

    @classmethod
    def upgrade_saved(cls, data: dict) -> dict:
        """A saved config of the earlier flat layout (every stage setting at the top, `box_stds`)
        in this layout, so that older checkpoints keep their config."""
        if "stage" in data:
            return data
        per_stage = {"fg_ious", "box_stds", "loss_weights", "_type"}
        stage = {k: v for k, v in data.items() if k not in per_stage}
        stage.update(_type=f"{RoIHeadsConfig.__module__}:{RoIHeadsConfig.__qualname__}", class_agnostic=True)
        upgraded = {k: v for k, v in data.items() if k in ("_type", "fg_ious", "loss_weights")}
        upgraded["stage"] = stage
        if "box_stds" in data:
            upgraded["box_weights"] = [[1.0 / s for s in std] for std in data["box_stds"]]
        return upgraded

    def build(self, in_channels: int, num_classes: int, *, run_head: RunHead = run_head_directly) -> CascadeRoIHeads:
        if not self.stage.class_agnostic:
            raise ValueError("model.roi_heads.stage.class_agnostic: cascade stages refine class-agnostic boxes")
        if not len(self.fg_ious) == len(self.box_weights) == len(self.loss_weights):
            raise ValueError("model.roi_heads: fg_ious, box_weights and loss_weights need one entry per stage")
        pooler = self.stage.build_pooler()  # shared: it has no parameters
        stages = [dataclasses.replace(self.stage, fg_iou=iou, bg_iou=iou, box_weights=weights)
                  .build(in_channels, num_classes, run_head=run_head, pooler=pooler)
                  for iou, weights in zip(self.fg_ious, self.box_weights)]
        return CascadeRoIHeads(stages, loss_weights=self.loss_weights)
