"""Mask R-CNN: Faster R-CNN whose R-CNN stage also predicts a mask per detection."""

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from simpledet.accel.roi_bucket import run_bucketed
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.detectors.two_stage import TwoStageDetector
from simpledet.modeling.heads.mask_head import MaskHeadConfig, paste_masks
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig


class MaskRCNN(TwoStageDetector):
    """torchvision's Mask R-CNN interface: training targets carry `masks` (N, H, W) uint8/bool in
    the input image's pixels; eval outputs add `masks` (N, 1, H, W) float probabilities in [0, 1]
    on the original image (threshold at 0.5 for binary masks)."""

    trains_on_masks = True

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        outputs = super().forward(images, targets)
        if self.training:
            return outputs
        # torchvision's order: boxes are first rescaled to the original image, then the 28x28
        # masks pasted into those boxes at that size
        for det, image in zip(outputs, images):
            det["masks"] = paste_masks(det["masks"], det["boxes"], (image.shape[-2], image.shape[-1]))
        return outputs


@dataclass
class MaskRCNNConfig(FasterRCNNConfig):
    """Faster R-CNN's parts plus the mask branch, which the R-CNN stage runs on FPN features."""

    predicts_masks: ClassVar[bool] = True
    detector: ClassVar[type[TwoStageDetector]] = MaskRCNN
    mask_head: MaskHeadConfig = field(default_factory=MaskHeadConfig)

    @classmethod
    def from_faster(cls, faster: FasterRCNNConfig, mask_head: MaskHeadConfig | None = None) -> "MaskRCNNConfig":
        """A Faster R-CNN config with a mask branch added: SimpleDet's mask configs are its faster
        configs plus MaskParam / MaskRoiParam, nothing else changed."""
        parts = {f.name: getattr(faster, f.name) for f in dataclasses.fields(FasterRCNNConfig)}
        return cls(**parts, mask_head=mask_head if mask_head is not None else MaskHeadConfig())

    def build_roi_heads(self, channels: dict[str, int]) -> nn.Module:
        if self.neck is None:
            raise ValueError("Mask R-CNN is built on FPN features: model.neck must be set")
        if not isinstance(self.roi_heads, RoIHeadsConfig):
            raise ValueError("Mask R-CNN's mask branch joins a single R-CNN stage (RoIHeadsConfig)")
        return self.roi_heads.build(channels[self.roi_heads.in_features[0]], self.num_classes, run_head=run_bucketed,
                                    mask=self.mask_head)
