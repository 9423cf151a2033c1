"""Two-stage detector: composition only. Faster, Mask and Cascade R-CNN differ in the parts."""

from torch import Tensor, nn

from simpledet.modeling.detectors.detector import Detector
from simpledet.modeling.preprocess import ImagePreprocessor
from simpledet.structures.ground_truth import PaddedGroundTruth


class TwoStageDetector(Detector):
    """preprocess -> backbone -> neck -> RPN -> RoI heads, as torchvision's GeneralizedRCNN."""

    def __init__(self, *, preprocess: ImagePreprocessor, backbone: nn.Module, neck: nn.Module | None, rpn: nn.Module,
                 roi_heads: nn.Module, num_classes: int) -> None:
        super().__init__(preprocess=preprocess, backbone=backbone, neck=neck, num_classes=num_classes)
        self.rpn = rpn
        self.roi_heads = roi_heads

    @property
    def dense_head(self) -> nn.Module:
        return self.rpn

    def rcnn_stages(self) -> list[nn.Module]:
        return self.roi_heads.rcnn_stages()

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.backbone, *self.roi_heads.pretrained_modules()]

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        self.check_inputs(images, targets)
        batch, sizes, targets = self.preprocess(images, targets)
        features, rpn_outputs = self.dense_step(batch)  # backbone -> neck -> the RPN's convolutions
        gt = PaddedGroundTruth.of(targets, batch.device) if self.training else None  # once, for every head
        # the RPN's losses first: they never wait for the device, so a GPU still runs the backbone
        # while the host queues them; the proposals' NMS then waits for both at once
        anchors = self.rpn.anchors(features, sizes)
        losses = self.rpn.losses(rpn_outputs, anchors, gt, sizes) if self.training else {}
        proposals = self.rpn.postprocess(rpn_outputs, anchors, sizes)
        detections, roi_losses = self.roi_heads(features, proposals, sizes, targets, gt)
        if self.training:
            return {**losses, **roi_losses}
        return self.preprocess.postprocess(detections, sizes)
