"""RPN-only model: the first stage of Faster R-CNN trained and tested alone, as SimpleDet's
config/rpn_*.py with symbol/builder.py's RPN detector and rpn_test.py. Its outputs are proposals:
`boxes` in the original image's pixels, `scores` (objectness probabilities), and `labels` all 1
(class-agnostic); `simpledet eval` scores them by proposal recall (engine/proposal_recall.py)."""

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from simpledet.accel.concurrent_nms import concurrent_nms
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.detectors.detector import Detector, DetectorConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import ImagePreprocessor
from simpledet.structures.ground_truth import PaddedGroundTruth


class RPNOnlyDetector(Detector):
    """preprocess -> backbone -> neck (or None) -> RPN. Training targets' labels are ignored (any
    object is foreground), but still checked against num_classes, the dataset's classes."""

    def __init__(self, *, preprocess: ImagePreprocessor, backbone: nn.Module, neck: nn.Module | None, rpn: nn.Module,
                 num_classes: int) -> None:
        super().__init__(preprocess=preprocess, backbone=backbone, neck=neck, num_classes=num_classes)
        self.rpn = rpn

    @property
    def dense_head(self) -> nn.Module:
        return self.rpn

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        self.check_inputs(images, targets)
        batch, sizes, targets = self.preprocess(images, targets)
        features, outputs = self.dense_step(batch)
        anchors = self.rpn.anchors(features, sizes)
        if self.training:
            return self.rpn.losses(outputs, anchors, PaddedGroundTruth.of(targets, batch.device), sizes)
        proposals = self.rpn.postprocess(outputs, anchors, sizes, with_scores=True)
        detections = [{"boxes": boxes, "scores": scores.to(boxes.dtype),
                       "labels": torch.ones(len(boxes), dtype=torch.int64, device=boxes.device)}
                      for boxes, scores in proposals]
        return self.preprocess.postprocess(detections, sizes)


@dataclass
class RPNOnlyConfig(DetectorConfig):
    """An RPN with its backbone and neck: FPN (rpn_r50v1_fpn_1x) or C4 (rpn_r50v2c4_1x, neck None).
    num_classes is the dataset's class count, which targets are checked against; the proposals
    themselves are class-agnostic. `final_head` is the RPN: its score_thresh is the proposals'."""

    proposals_only: ClassVar[bool] = True
    backbone: ResNetConfig | ResNetV2Config = field(default_factory=ResNetConfig)
    neck: FPNConfig | None = field(default_factory=FPNConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)

    @property
    def final_head(self) -> RPNConfig:
        return self.rpn

    def build(self) -> RPNOnlyDetector:
        backbone = self.backbone.build()
        neck = self.neck.build(backbone.output_shape()) if self.neck is not None else None
        channels = (neck or backbone).output_shape()
        return RPNOnlyDetector(preprocess=self.input.build(), num_classes=self.num_classes, backbone=backbone,
                               neck=neck, rpn=self.rpn.build(channels[self.rpn.in_features[0]],
                                                             nms_each=concurrent_nms))
