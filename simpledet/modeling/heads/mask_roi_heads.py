"""R-CNN stage with a mask branch: the box branch exactly as Faster R-CNN's, plus masks.

Training: the box branch samples and matches RoIs as usual; the mask branch takes the foreground
ones among them (SimpleDet: at most 128 per image), with the ground truth each was matched to.
Inference: masks are predicted for the final detections (after NMS), as in SimpleDet and
torchvision, and returned as 28x28 probabilities of the predicted class; the detector pastes
them into the image once the boxes are in original pixels.
"""

import torch
from torch import Tensor, nn
from torchvision.ops import MultiScaleRoIAlign

from simpledet.modeling.heads.mask_head import MaskHead, class_mask_probs, mask_loss, mask_targets
from simpledet.modeling.heads.roi_heads import RoIHeads
from simpledet.modeling.layers.roi_batch import bucketable, run_roi_head
from simpledet.structures.targets import PaddedGroundTruth


class MaskRoIHeads(RoIHeads):
    def __init__(self, box_heads: RoIHeads, mask_pooler: MultiScaleRoIAlign, mask_head: MaskHead,
                 mask_resolution: int) -> None:
        if type(box_heads) is not RoIHeads:
            raise TypeError(f"Mask R-CNN extends the plain RoIHeads, got {type(box_heads).__name__}")
        nn.Module.__init__(self)
        # Take over the box branch as RoIHeadsConfig built it: the same submodules, hence the same
        # parameter names as Faster R-CNN (checkpoints and converters carry over), and the same
        # settings (matcher, sampler, thresholds), whatever fields RoIHeads grows.
        for name, value in vars(box_heads).items():
            if not name.startswith("_") and name != "training":
                setattr(self, name, value)
        for name, module in box_heads.named_children():
            self.add_module(name, module)
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.bucket_mask_rois = bucketable(mask_head)
        self.mask_resolution = mask_resolution

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        if not self.training:
            detections, _ = super().forward(features, proposals, image_sizes)
            self.add_masks(features, detections, image_sizes)
            return detections, {}
        if targets is None:
            raise ValueError("targets are needed in training mode")
        if not all("masks" in t for t in targets):
            raise ValueError("Mask R-CNN trains on instance masks: every target needs 'masks' (N, H, W) "
                             "(CocoDetection(..., with_masks=True))")
        proposals, classes, box_targets = self.sample_proposals(proposals, targets, gt)
        losses, _ = self.sampled_losses(features, proposals, image_sizes, classes, box_targets)
        losses["loss_mask"] = self.mask_losses(features, proposals, classes, image_sizes, targets)
        return [], losses

    def mask_losses(self, features: dict[str, Tensor], proposals: list[Tensor], classes: Tensor,
                    image_sizes: list[tuple[int, int]], targets: list[dict]) -> Tensor:
        """Loss of the mask branch on the foreground RoIs among the sampled ones."""
        # the foreground RoIs of every image, with one wait for their per-image counts (indexing
        # each image's proposals with a boolean mask would wait once per image and tensor)
        is_fg = classes > 0
        per_image = torch.stack([f.sum() for f in is_fg.split([len(p) for p in proposals])]).tolist()
        fg = torch.nonzero_static(is_fg, size=sum(per_image)).squeeze(1)
        rois = list(torch.cat(proposals)[fg].split(per_image))
        gt_index = list(self.last_matched_gt[fg].split(per_image))
        logits = run_roi_head(self.mask_head, self.mask_pooler(features, rois, image_sizes), self.bucket_mask_rois)
        device = logits.device
        gt_masks = [t["masks"].to(device) for t in targets]
        goal = mask_targets(gt_masks, rois, gt_index, image_sizes, self.mask_resolution)
        return mask_loss(logits, classes[fg], goal)

    def add_masks(self, features: dict[str, Tensor], detections: list[dict],
                  image_sizes: list[tuple[int, int]]) -> None:
        """Adds `masks` (n, 1, 28, 28) probabilities to each image's detections."""
        boxes = [d["boxes"] for d in detections]
        logits = run_roi_head(self.mask_head, self.mask_pooler(features, boxes, image_sizes), self.bucket_mask_rois)
        labels = torch.cat([d["labels"] for d in detections])
        probs = class_mask_probs(logits, labels)
        for det, masks in zip(detections, probs.split([len(b) for b in boxes])):
            det["masks"] = masks
