"""One-stage detector: composition only. RetinaNet (and any dense head) differ in the parts."""

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from simpledet.modeling.detectors.detector import Detector, DetectorConfig
from simpledet.modeling.preprocess import ImagePreprocessor
from simpledet.structures.ground_truth import PaddedGroundTruth


class OneStageDetector(Detector):
    """preprocess -> backbone -> neck -> dense head, whose `losses` and `postprocess` take its
    outputs: head.anchors(features, sizes), head.losses(outputs, anchors, gt) -> dict,
    head.postprocess(outputs, anchors, sizes) -> detections in the resized images' pixels."""

    def __init__(self, *, preprocess: ImagePreprocessor, backbone: nn.Module, neck: nn.Module | None,
                 head: nn.Module, num_classes: int) -> None:
        super().__init__(preprocess=preprocess, backbone=backbone, neck=neck, num_classes=num_classes)
        self.head = head

    @property
    def dense_head(self) -> nn.Module:
        return self.head

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        self.check_inputs(images, targets)
        batch, sizes, targets = self.preprocess(images, targets)
        features, outputs = self.dense_step(batch)  # backbone -> neck -> the head's convolutions
        anchors = self.head.anchors(features, sizes)
        if self.training:
            return self.head.losses(outputs, anchors, PaddedGroundTruth.of(targets, batch.device))
        return self.preprocess.postprocess(self.head.postprocess(outputs, anchors, sizes), sizes)


@dataclass
class OneStageConfig(DetectorConfig):
    """What every one-stage family's config does with its `backbone`, `neck` and `head` fields
    (RetinaNet, FreeAnchor, FCOS, RepPoints declare them): the FPN takes only the stages the
    backbone returns (C3-C5: no P2, too many anchors), the head its first level's channels."""

    @property
    def final_head(self) -> Any:
        return self.head

    def build(self) -> OneStageDetector:
        backbone = self.backbone.build()
        neck = self.neck.build(backbone.output_shape())
        channels = neck.output_shape()
        return OneStageDetector(
            preprocess=self.input.build(),
            num_classes=self.num_classes,
            backbone=backbone,
            neck=neck,
            head=self.head.build(channels[self.head.in_features[0]], self.num_classes),
        )
