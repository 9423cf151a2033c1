"""Cascade R-CNN (Cai & Vasconcelos 2018) as SimpleDet built it: three R-CNN stages, each resampling
its RoIs at a higher IoU (0.5 / 0.6 / 0.7) from the boxes the previous stage refined, with its own
box std and loss weight (1 / 0.5 / 0.25). At test time the boxes come from the last stage and the
class scores are the mean of all three classifiers applied to the last stage's RoIs."""

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.modeling.heads.box_head import BoxPredictor, MLPHeadConfig
from simpledet.modeling.heads.res5_head import Res5HeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeads, RoIHeadsConfig
from simpledet.structures.targets import PaddedGroundTruth


class CascadeRoIHeads(nn.Module):
    def __init__(self, stages: list[RoIHeads], loss_weights: tuple[float, ...]) -> None:
        super().__init__()
        if len(stages) != len(loss_weights):
            raise ValueError("one loss weight per cascade stage")
        self.stages = nn.ModuleList(stages)
        self.loss_weights = tuple(loss_weights)

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        last = len(self.stages) - 1
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            gt = gt if gt is not None else PaddedGroundTruth.of(targets, proposals[0].device)
            losses = {}
            for i, (stage, weight) in enumerate(zip(self.stages, self.loss_weights)):
                sampled, classes, box_targets = stage.sample_proposals(proposals, targets, gt)
                stage_losses, deltas = stage.sampled_losses(features, sampled, image_sizes, classes, box_targets)
                for name, value in stage_losses.items():
                    losses[f"{name}_stage{i + 1}"] = value * weight
                if i < last:
                    proposals = stage.refine(deltas, sampled, image_sizes)
            return [], losses

        for i, stage in enumerate(self.stages):
            logits, deltas = stage.predict(features, proposals, image_sizes)
            if i < last:
                proposals = stage.refine(deltas, proposals, image_sizes)
        # every stage's classifier on the last stage's RoIs, averaged (the last one is at hand)
        scores = F.softmax(logits, -1)
        for stage in self.stages[:last]:
            scores = scores + F.softmax(stage.predict(features, proposals, image_sizes)[0], -1)
        scores = scores / len(self.stages)
        return self.stages[last].postprocess(scores, deltas, proposals, image_sizes), {}


def _inverse(std: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return tuple(1.0 / s for s in std)


@dataclass
class CascadeRoIHeadsConfig:
    """SimpleDet's cascade: class-agnostic boxes, 512 RoIs at 25% foreground in every stage."""

    in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5")
    pooler_resolution: int = 7
    pooler_sampling_ratio: int = 2
    box_head: MLPHeadConfig | Res5HeadConfig = field(default_factory=MLPHeadConfig)
    fg_ious: tuple[float, ...] = (0.5, 0.6, 0.7)
    box_stds: tuple[tuple[float, float, float, float], ...] = (
        (0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
    loss_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    box_loss_beta: float = 1.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    nms_method: str = "nms"
    soft_nms_sigma: float = 0.5

    def build(self, in_channels: int, num_classes: int) -> CascadeRoIHeads:
        pooler = RoIHeadsConfig(in_features=self.in_features, pooler_resolution=self.pooler_resolution,
                                pooler_sampling_ratio=self.pooler_sampling_ratio).build_pooler()
        stages = []
        for fg_iou, std in zip(self.fg_ious, self.box_stds):
            head = self.box_head.build(in_channels, self.pooler_resolution)
            predictor = BoxPredictor(head.out_channels, num_classes, class_agnostic=True)
            stages.append(RoIHeads(pooler, head, predictor, fg_iou=fg_iou, bg_iou=fg_iou,
                                   batch_size_per_image=self.batch_size_per_image,
                                   positive_fraction=self.positive_fraction, box_weights=_inverse(std),
                                   score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                                   detections_per_img=self.detections_per_img, box_loss_beta=self.box_loss_beta,
                                   nms_method=self.nms_method, soft_nms_sigma=self.soft_nms_sigma))
        return CascadeRoIHeads(stages, self.loss_weights)
