"""The contract every detector keeps, which the rest of simpledet relies on instead of probing a
model's structure: the trainer, the CLI and Python API, the zoo table and the CUDA-graph seam
(simpledet/accel) all go through these names. docs/NOTES.md, "Adding a family", lists them.

A detector module takes torchvision's interface at the edge: model(images, targets) with float
CHW images in [0, 1]; losses in training, a list of dicts with `boxes` (x1y1x2y2 in the original
image's pixels), `labels` (1..num_classes) and `scores` in evaluation.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from simpledet.modeling.preprocess import ImagePreprocessor, InputConfig
from simpledet.structures.input_checks import check_images, check_targets, check_values


class Detector(nn.Module):
    """preprocess -> backbone -> neck (or None) -> a dense head whose convolutions run on every
    position of the features, then whatever the family does with its outputs."""

    # whether training targets carry `masks` (N, H, W), checked with the rest of the input
    trains_on_masks: ClassVar[bool] = False

    def __init__(self, *, preprocess: ImagePreprocessor, backbone: nn.Module, neck: nn.Module | None,
                 num_classes: int) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.backbone = backbone
        self.neck = neck
        self.num_classes = num_classes
        # Whether forward checks its inputs' values (pixels in [0, 1], finite boxes, labels in
        # range), which costs a wait for the device. The trainer turns it off: it checks its
        # targets on the CPU before they move (simpledet/engine/trainer.py).
        self.check_input_values = True

    def check_inputs(self, images: list[Tensor], targets: list[dict] | None) -> None:
        """Every family's forward starts here: a bad image or target is refused with a message
        naming it (simpledet/structures/input_checks.py), before any of it reaches a layer."""
        check_images(images)
        if self.training:
            check_targets(targets, images, masks=self.trains_on_masks)
        if self.check_input_values:
            check_values(images, targets if self.training else None, self.num_classes)

    @property
    def dense_head(self) -> nn.Module:
        """The head `dense_step` runs on the features: forward(features) -> its raw outputs."""
        raise NotImplementedError

    def dense_step(self, batch: Tensor) -> tuple[dict[str, Tensor], Any]:
        """Backbone, neck and the dense head's convolutions on a padded batch: the part of a step
        whose shapes the batch's shape alone fixes. train.cuda_graphs replaces this method on the
        model instance by a CUDA graph of it (simpledet/accel/cuda_graphs.py); nothing else does."""
        features = self.backbone(batch)
        if self.neck is not None:
            features = self.neck(features)
        return features, self.dense_head(features)

    def rcnn_stages(self) -> list[nn.Module]:
        """The R-CNN stages (RoIHeads), whose sampling and 2MLP box head train.cuda_graphs also
        captures: none for one-stage detectors."""
        return []

    def pretrained_modules(self) -> list[nn.Module]:
        """The modules a pretrained backbone file (model.backbone.pretrained) initialises: the
        backbone, and a C4 head's stage 5. Their parameter names are the file's."""
        return [self.backbone]


@dataclass
class DetectorConfig:
    """What every detector config has and answers. num_classes counts foreground classes only
    (COCO: 80); the model config's `backbone` has a `pretrained` field."""

    num_classes: int = 80
    input: InputConfig = field(default_factory=InputConfig)
    # whether the model trains on and predicts instance masks (the trainer loads them, `eval` adds mask AP)
    predicts_masks: ClassVar[bool] = False
    # whether each mask also has its own score (Mask Scoring R-CNN: `mask_scores`, exported too)
    predicts_mask_scores: ClassVar[bool] = False
    # whether its outputs are class-agnostic proposals (RPN-only: `eval` scores proposal recall)
    proposals_only: ClassVar[bool] = False
    # whether `eval` scores it by CrowdHuman's AP and MR^-2 (engine/crowdhuman_metrics.py) instead of COCO's stats
    crowdhuman_metrics: ClassVar[bool] = False

    @property
    def trains_on_ignore_regions(self) -> bool:
        """Whether training reads the data's crowd boxes as ignore regions (targets' `ignore_boxes`):
        the model has an RPN whose `ignore_iof` is set, as SimpleDet's CrowdHuman configs."""
        rpn = getattr(self, "rpn", None)
        return getattr(rpn, "ignore_iof", None) is not None

    @property
    def final_head(self) -> Any:
        """The config section that decides the detections: score_thresh, nms_thresh,
        detections_per_img (`predict --score-thresh` sets its score_thresh)."""
        raise NotImplementedError

    def build(self) -> Detector:
        raise NotImplementedError
