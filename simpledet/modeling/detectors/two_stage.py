"""Two-stage detector: composition only. Faster, Mask and Cascade R-CNN differ in the parts."""

from torch import Tensor, nn

from simpledet.modeling.graphed_features import extract_features
from simpledet.structures.targets import PaddedGroundTruth


class TwoStageDetector(nn.Module):
    """torchvision's interface: model(images, targets) with float CHW images in [0, 1].

    Training mode returns a dict of losses; eval mode a list of dicts with `boxes` (x1y1x2y2 in the
    original image's pixels), `labels` (1..num_classes) and `scores`.
    """

    def __init__(self, preprocess: nn.Module, backbone: nn.Module, neck: nn.Module | None,
                 rpn: nn.Module, roi_heads: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.backbone = backbone
        self.neck = neck
        self.graphed_features = None  # train.cuda_graphs: a GraphedFeatures (engine/trainer.py)
        self.rpn = rpn
        self.roi_heads = roi_heads

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, sizes, targets = self.preprocess(images, targets)
        features, rpn_head_outputs = extract_features(self, batch)
        gt = PaddedGroundTruth.of(targets, batch.device) if self.training else None  # once, for both stages
        proposals, rpn_losses = self.rpn(features, tuple(batch.shape[-2:]), sizes, targets, rpn_head_outputs, gt)
        detections, roi_losses = self.roi_heads(features, proposals, sizes, targets, gt)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.preprocess.postprocess(detections, sizes, original_sizes)
