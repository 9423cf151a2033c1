"""R-CNN stage: pools features for each proposal, classifies it and refines its box; with a mask
branch (Mask R-CNN), also predicts a mask per detection.

Training: ground-truth boxes join the proposals, every proposal is matched by IoU (batched over
the images), a balanced set is sampled (SimpleDet: 512 per image, 25% foreground) and the losses
computed; the mask branch takes the foreground ones among them, with the ground truth each was
matched to. Inference: softmax scores, per-class boxes, score threshold, per-class NMS, top-k;
masks are predicted for the final detections (as in SimpleDet and torchvision) and returned as
28x28 probabilities of the predicted class, which the detector pastes into the image once the
boxes are in original pixels.

The mask branch is an optional pair of parts (mask_pooler, mask_head), as in torchvision's
RoIHeads: Mask R-CNN's box branch is Faster R-CNN's, with the same parameter names.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from simpledet.modeling.box_coder import BoxCoder, matched_box_targets
from simpledet.modeling.box_iou import batched_box_iou
from simpledet.modeling.heads.box_head import BoxPredictor, MLPHeadConfig
from simpledet.modeling.heads.mask_head import MaskHeadConfig, class_mask_probs, mask_loss, mask_targets
from simpledet.modeling.heads.res5_head import Res5HeadConfig, Res5V2HeadConfig
from simpledet.modeling.layers.roi_pooler import LevelSortedRoIAlign
from simpledet.modeling.matcher import IGNORE, Matcher
from simpledet.modeling.nms import class_nms
from simpledet.modeling.sampler import BalancedSampler
from simpledet.structures.ground_truth import PaddedGroundTruth, pad_boxes
from simpledet.structures.image_sizes import ImageSizes

# run_head(head, rois) applies a RoI head to pooled RoIs: run_head_directly, or
# accel.roi_bucket.run_bucketed (the detector configs' choice), which pads the RoI count for cuDNN.
RunHead = Callable[[nn.Module, Tensor], Tensor]


def run_head_directly(head: nn.Module, rois: Tensor) -> Tensor:
    return head(rois)


@dataclass
class SampledRoIs:
    """An R-CNN stage's training RoIs: the proposals it sampled and what each should predict."""

    boxes: list[Tensor]  # per image, (R_i, 4) in the resized image's pixels
    classes: Tensor  # (R,) the matched ground truth's label, 0 for background
    box_targets: Tensor  # (R, 4) encoded towards the matched ground truth; zero for background
    matched_gt: Tensor  # (R,) index of the matched ground truth within its image


class RoIHeads(nn.Module):
    def __init__(self, pooler: nn.Module, box_head: nn.Module, box_predictor: BoxPredictor, *, fg_iou: float,
                 bg_iou: float, batch_size_per_image: int, positive_fraction: float,
                 box_weights: tuple[float, float, float, float], box_loss_beta: float, score_thresh: float,
                 nms_thresh: float, detections_per_img: int, nms_method: str, soft_nms_sigma: float,
                 mask_pooler: nn.Module | None = None, mask_head: nn.Module | None = None,
                 run_head: RunHead = run_head_directly) -> None:
        super().__init__()
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.run_head = run_head
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=False)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(box_weights)
        self.box_loss_beta = box_loss_beta
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.nms_method = nms_method
        self.soft_nms_sigma = soft_nms_sigma

    def rcnn_stages(self) -> list["RoIHeads"]:
        return [self]

    def pretrained_modules(self) -> list[nn.Module]:
        """The parts an ImageNet backbone file initialises too: a C4 head's stage 5."""
        return [self.box_head] if self.box_head.loads_backbone_weights else []

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], sizes: ImageSizes,
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        """Detections (eval) or losses (training). gt: `targets` padded, which the detector makes
        once for every head (made here if not given)."""
        if not self.training:
            logits, deltas = self.predict(features, proposals, sizes)
            detections = self.postprocess(F.softmax(logits, -1), deltas, proposals, sizes)
            if self.mask_head is not None:
                self.add_masks(features, detections, sizes)
            return detections, {}
        if targets is None:
            raise ValueError("targets are needed in training mode")
        sampled = self.sample_proposals(proposals, targets, gt)
        losses, _ = self.sampled_losses(features, sampled, sizes)
        if self.mask_head is not None:
            losses["loss_mask"] = self.mask_losses(features, sampled, sizes, targets)
        return [], losses

    def predict(self, features: dict[str, Tensor], proposals: list[Tensor], sizes: ImageSizes
                ) -> tuple[Tensor, Tensor]:
        """Class logits and box deltas of every proposal."""
        return self.predict_pooled(self.pooler(features, proposals, sizes.resized))

    def predict_pooled(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        return self.box_predictor(self.run_head(self.box_head, pooled))

    # ---------------------------------------------------------------- training
    @torch.no_grad()
    def sample_proposals(self, proposals: list[Tensor], targets: list[dict], gt: PaddedGroundTruth | None = None
                         ) -> SampledRoIs:
        """The proposals sampled for the losses, with their classes, regression targets and
        matched ground truth. gt: `targets` padded (made here if not given)."""
        device = proposals[0].device
        gt = gt if gt is not None else PaddedGroundTruth.of(targets, device)
        proposals = [torch.cat([p, t["boxes"].to(device)]) for p, t in zip(proposals, targets)]
        boxes, box_valid = pad_boxes(proposals, device)
        priority = self.sampler.draw_priority(tuple(box_valid.shape), device)
        sampled, per_image, matched, classes, box_targets = self.match_and_sample(
            gt.boxes, gt.valid, gt.labels, boxes, box_valid, priority)
        # one wait for the per-image counts; with their sum, nonzero_static finds the sampled
        # candidates without another (nonzero and boolean indexing would wait once each)
        per_image = per_image.tolist()
        image, candidate = torch.nonzero_static(sampled, size=sum(per_image)).unbind(1)
        return SampledRoIs(list(boxes[image, candidate].split(per_image)), classes[image, candidate],
                           box_targets[image, candidate], matched[image, candidate])

    def match_and_sample(self, gt_boxes: Tensor, gt_valid: Tensor, gt_labels: Tensor, boxes: Tensor,
                         box_valid: Tensor, priority: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Matching, balanced sampling and targets of every image's candidates at once, on padded
        tensors: ground truth (B, G, ...) and candidates (B, P, ...) with validity masks; priority
        (2, B, P) the sampler's random numbers. Returns, for every candidate: whether it is sampled
        (B, P), the per-image count of those (B,), its matched ground truth (B, P), its class
        (0: background) and box regression target (B, P, 4; zero but for the foreground).

        Its shapes are those of its inputs, so train.cuda_graphs replaces it by a CUDA graph
        (simpledet/accel/cuda_graphs.py)."""
        matched, labels = self.matcher(batched_box_iou(gt_boxes, boxes), gt_valid)
        labels = torch.where(box_valid, labels, IGNORE)
        fg, bg = self.sampler.select(labels, priority)
        sampled = fg | bg
        classes = torch.gather(gt_labels, 1, matched) * fg
        box_targets = matched_box_targets(self.box_coder, boxes, gt_boxes, matched, fg)
        return sampled, sampled.sum(dim=1), matched, classes, box_targets

    def sampled_losses(self, features: dict[str, Tensor], sampled: SampledRoIs, sizes: ImageSizes
                       ) -> tuple[dict[str, Tensor], Tensor]:
        """The losses of the sampled RoIs, and their deltas without gradient (a cascade's next stage
        starts from them). Pooling waits for the device (its level counts); what follows has
        static shapes (box_head_losses)."""
        pooled = self.pooler(features, sampled.boxes, sizes.resized)
        loss_cls, loss_box, deltas = self.box_head_losses(pooled, sampled.classes, sampled.box_targets)
        return {"loss_cls": loss_cls, "loss_box": loss_box}, deltas

    def box_head_losses(self, pooled: Tensor, classes: Tensor, box_targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Box head, predictor and losses over the sampled RoIs' pooled features: (classification
        loss, box loss, the predicted deltas without gradient). With a 2MLP head its shapes are
        static (the RoIs sampled per image), so train.cuda_graphs replaces it by a CUDA graph."""
        logits, deltas = self.predict_pooled(pooled)
        return *box_losses(logits, deltas, classes, box_targets, self.box_loss_beta), deltas.detach()

    def mask_losses(self, features: dict[str, Tensor], sampled: SampledRoIs, sizes: ImageSizes,
                    targets: list[dict]) -> Tensor:
        """Loss of the mask branch on the foreground RoIs among the sampled ones."""
        # the foreground RoIs of every image, with one wait for their per-image counts (indexing
        # each image's proposals with a boolean mask would wait once per image and tensor)
        is_fg = sampled.classes > 0
        per_image = torch.stack([f.sum() for f in is_fg.split([len(b) for b in sampled.boxes])]).tolist()
        fg = torch.nonzero_static(is_fg, size=sum(per_image)).squeeze(1)
        rois = list(torch.cat(sampled.boxes)[fg].split(per_image))
        gt_index = list(sampled.matched_gt[fg].split(per_image))
        logits = self.run_head(self.mask_head, self.mask_pooler(features, rois, sizes.resized))
        gt_masks = [t["masks"].to(logits.device) for t in targets]
        goal = mask_targets(gt_masks, rois, gt_index, sizes.to_original, logits.shape[-1])
        return mask_loss(logits, sampled.classes[fg], goal)

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def refine(self, deltas: Tensor, proposals: list[Tensor], sizes: ImageSizes) -> list[Tensor]:
        """Proposals moved by class-agnostic deltas and clipped: the next cascade stage's input.
        Clipped as clip_boxes_to_image does, in 1 + images kernels instead of 5 per image."""
        boxes = self.box_coder.decode(deltas.float().detach()[:, :4], torch.cat(proposals))[:, 0].clamp(min=0)
        return [torch.minimum(b, limit) for b, limit in zip(boxes.split([p.shape[0] for p in proposals]), sizes.limits)]

    def postprocess(self, scores: Tensor, deltas: Tensor, proposals: list[Tensor], sizes: ImageSizes) -> list[dict]:
        """scores: (R, num_classes + 1) class probabilities; deltas: per class or agnostic."""
        num_classes = scores.shape[-1]
        scores, deltas = scores.float(), deltas.float()
        boxes = self.box_coder.decode(deltas, torch.cat(proposals))  # (R, K or 1, 4)
        if boxes.shape[1] == 1:
            boxes = boxes.expand(-1, num_classes, -1)
        counts = [p.shape[0] for p in proposals]
        results = []
        for img_boxes, img_scores, size in zip(boxes.split(counts), scores.split(counts), sizes.resized):
            img_boxes = clip_boxes_to_image(img_boxes, size)
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(img_scores)
            # drop the background column, then one candidate per (proposal, class)
            img_boxes = img_boxes[:, 1:].reshape(-1, 4)
            img_scores = img_scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            keep = torch.where(img_scores > self.score_thresh)[0]
            img_boxes, img_scores, labels = img_boxes[keep], img_scores[keep], labels[keep]
            keep = remove_small_boxes(img_boxes, min_size=1e-2)
            img_boxes, img_scores, labels = img_boxes[keep], img_scores[keep], labels[keep]
            keep, kept_scores = class_nms(img_boxes, img_scores, labels, self.nms_thresh, self.detections_per_img,
                                          self.nms_method, self.soft_nms_sigma)
            results.append({"boxes": img_boxes[keep], "scores": kept_scores, "labels": labels[keep]})
        return results

    def add_masks(self, features: dict[str, Tensor], detections: list[dict], sizes: ImageSizes) -> None:
        """Adds `masks` (n, 1, 28, 28) probabilities to each image's detections."""
        boxes = [d["boxes"] for d in detections]
        logits = self.run_head(self.mask_head, self.mask_pooler(features, boxes, sizes.resized))
        labels = torch.cat([d["labels"] for d in detections])
        probs = class_mask_probs(logits, labels)
        for det, masks in zip(detections, probs.split([b.shape[0] for b in boxes])):
            det["masks"] = masks


def box_losses(logits: Tensor, deltas: Tensor, classes: Tensor, box_targets: Tensor, beta: float
               ) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled RoIs; smooth-L1 of the ground-truth class's deltas over the
    foreground ones (masked, not indexed: no host-device synchronisation), both over the number
    sampled."""
    logits, deltas = logits.float(), deltas.float()  # losses in fp32 under mixed precision
    cls_loss = F.cross_entropy(logits, classes)
    deltas = deltas.view(deltas.shape[0], -1, 4)
    column = torch.zeros_like(classes) if deltas.shape[1] == 1 else classes
    picked = deltas[torch.arange(deltas.shape[0], device=deltas.device), column]
    box_loss = F.smooth_l1_loss(picked, box_targets, beta=beta, reduction="none").sum(1)
    box_loss = torch.where(classes > 0, box_loss, 0.0).sum() / max(classes.numel(), 1)
    return cls_loss, box_loss


@dataclass
class RoIHeadsConfig:
    """SimpleDet FPN defaults: RoIAlign 7x7 on P2-P5, 512 RoIs/image with 25% foreground at
    IoU >= 0.5, box std (0.1, 0.1, 0.2, 0.2) as weights (10, 10, 5, 5), test score 0.05, NMS 0.5,
    100 detections."""

    in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5")
    pooler_resolution: int = 7
    pooler_sampling_ratio: int = 2
    box_head: MLPHeadConfig | Res5HeadConfig | Res5V2HeadConfig = field(default_factory=MLPHeadConfig)
    class_agnostic: bool = False
    fg_iou: float = 0.5
    bg_iou: float = 0.5
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    box_loss_beta: float = 1.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    nms_method: str = "nms"  # or "soft_linear", "soft_gaussian" (soft-NMS, SimpleDet's option)
    soft_nms_sigma: float = 0.5

    def build_pooler(self) -> LevelSortedRoIAlign:
        # one level (C4 heads) or several (FPN); the scale of each level is read off its size
        return LevelSortedRoIAlign(list(self.in_features), self.pooler_resolution, self.pooler_sampling_ratio)

    def build(self, in_channels: int, num_classes: int, *, run_head: RunHead = run_head_directly,
              pooler: nn.Module | None = None, mask: MaskHeadConfig | None = None,
              heads: type[RoIHeads] = RoIHeads, **parts: nn.Module) -> RoIHeads:
        """pooler: one to share (a cascade's stages); mask: the mask branch, for Mask R-CNN; heads
        and parts: a RoIHeads subclass and the parts it adds (Mask Scoring R-CNN's MaskIoU head)."""
        box_head = self.box_head.build(in_channels, self.pooler_resolution)
        predictor = BoxPredictor(in_features=box_head.output_size, num_classes=num_classes,
                                 class_agnostic=self.class_agnostic)
        return heads(pooler if pooler is not None else self.build_pooler(), box_head, predictor,
                        fg_iou=self.fg_iou, bg_iou=self.bg_iou, batch_size_per_image=self.batch_size_per_image,
                        positive_fraction=self.positive_fraction, box_weights=self.box_weights,
                        box_loss_beta=self.box_loss_beta, score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                        detections_per_img=self.detections_per_img, nms_method=self.nms_method,
                        soft_nms_sigma=self.soft_nms_sigma,
                        mask_pooler=mask.build_pooler() if mask is not None else None,
                        mask_head=mask.build(in_channels, num_classes) if mask is not None else None,
                        run_head=run_head, **parts)
