"""R-CNN stage: pools features for each proposal, classifies it and refines its box.

Training: ground-truth boxes join the proposals, every proposal is matched by IoU (batched over
the images), a balanced set is sampled (SimpleDet: 512 per image, 25% foreground) and the losses
computed. Inference: softmax scores, per-class boxes, score threshold, per-class NMS, top-k.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from simpledet.modeling.heads.box_head import BoxPredictor, MLPHead, MLPHeadConfig
from simpledet.modeling.heads.res5_head import Res5HeadConfig, Res5V2HeadConfig
from simpledet.modeling.layers.roi_batch import bucketable, run_roi_head
from simpledet.modeling.layers.roi_pooler import LevelSortedRoIAlign
from simpledet.structures.box_iou import batched_box_iou
from simpledet.structures.box_coder import BoxCoder
from simpledet.structures.matcher import IGNORE, Matcher
from simpledet.structures.nms import class_nms
from simpledet.structures.no_sync import host_tensor
from simpledet.structures.sampler import BalancedSampler
from simpledet.structures.targets import PaddedGroundTruth, matched_box_targets, pad_boxes


class RoIHeads(nn.Module):
    def __init__(self, pooler: nn.Module, box_head: nn.Module, box_predictor: BoxPredictor, *,
                 fg_iou: float = 0.5, bg_iou: float = 0.5, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, box_weights=(10.0, 10.0, 5.0, 5.0),
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 box_loss_beta: float = 1.0, nms_method: str = "nms", soft_nms_sigma: float = 0.5) -> None:
        super().__init__()
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.bucket_box_rois = bucketable(box_head)  # C4's stage-5 head: convolutions on RoIs
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=False)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(box_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.box_loss_beta = box_loss_beta
        self.nms_method = nms_method
        self.soft_nms_sigma = soft_nms_sigma
        self.sampling = SamplingTargets(self.matcher, self.sampler, self.box_coder)  # no parameter
        self.graphed_sampling = None  # train.cuda_graphs: a GraphCache of SamplingTargets
        self.graphed_box_losses = None  # and one of BoxHeadLosses

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        """gt: `targets` padded, where the caller did it for every head."""
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            proposals, classes, box_targets = self.sample_proposals(proposals, targets, gt)
            return [], self.sampled_losses(features, proposals, image_sizes, classes, box_targets)[0]
        logits, deltas = self.predict(features, proposals, image_sizes)
        return self.postprocess(F.softmax(logits, -1), deltas, proposals, image_sizes), {}

    def predict(self, features, proposals, image_sizes) -> tuple[Tensor, Tensor]:
        pooled = self.pooler(features, proposals, image_sizes)
        return self.box_predictor(run_roi_head(self.box_head, pooled, self.bucket_box_rois))

    def sampled_losses(self, features: dict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                       classes: Tensor, box_targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The losses of the sampled proposals, and their deltas without gradient (a cascade's
        next stage starts from them). Pooling waits for the device (its level counts); what
        follows has static shapes (512 RoIs an image), so train.cuda_graphs replays it as one
        graph (`graphed_box_losses`)."""
        pooled = self.pooler(features, proposals, image_sizes)
        if self.graphed_box_losses is not None:
            loss_cls, loss_box, deltas = self.graphed_box_losses(pooled, classes, box_targets)  # BoxHeadLosses
        else:
            logits, deltas = self.box_predictor(run_roi_head(self.box_head, pooled, self.bucket_box_rois))
            loss_cls, loss_box = box_losses(logits, deltas, classes, box_targets, self.box_loss_beta)
        return {"loss_cls": loss_cls, "loss_box": loss_box}, deltas.detach()

    @torch.no_grad()
    def sample_proposals(self, proposals: list[Tensor], targets: list[dict], gt: PaddedGroundTruth | None = None
                         ) -> tuple[list[Tensor], Tensor, Tensor]:
        """Sampled proposals per image, with their class (0 = background) and regression targets.

        Also keeps `self.last_matched_gt`: for each sampled proposal (in the same order), the index
        of its matched ground truth within its image, for heads that need more targets (masks)."""
        device = proposals[0].device
        gt = gt if gt is not None else PaddedGroundTruth.of(targets, device)
        proposals = [torch.cat([p, t["boxes"].to(device)]) for p, t in zip(proposals, targets)]
        # Padded to a few sizes (ground truths to a power of two, candidates to a multiple of 256),
        # so that train.cuda_graphs captures what follows a few times a run, not at every step.
        gt = gt.padded_to(max(8, 1 << (gt.boxes.shape[1] - 1).bit_length()))
        boxes, box_valid = pad_boxes(proposals, device, -(-max(len(p) for p in proposals) // 256) * 256)
        priority = torch.rand((2, *box_valid.shape), device=device)  # outside a graph: both draw alike
        sampling = self.graphed_sampling if self.graphed_sampling is not None else self.sampling
        sampled, per_image, matched, classes, box_targets = sampling(gt.boxes, gt.valid, gt.labels, boxes,
                                                                     box_valid, priority)
        # one wait for the per-image counts; with their sum, nonzero_static finds the sampled
        # candidates without another (nonzero and boolean indexing would wait once each)
        per_image = per_image.tolist()
        image, candidate = torch.nonzero_static(sampled, size=sum(per_image)).unbind(1)
        self.last_matched_gt = matched[image, candidate]  # the sampled rows only from here on
        return list(boxes[image, candidate].split(per_image)), classes[image, candidate], box_targets[image, candidate]

    @torch.no_grad()
    def refine(self, deltas: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Proposals moved by class-agnostic deltas and clipped: the next cascade stage's input.
        Clipped as clip_boxes_to_image does, in 1 + images kernels instead of 5 per image."""
        boxes = self.box_coder.decode(deltas.float().detach()[:, :4], torch.cat(proposals))[:, 0].clamp(min=0)
        limits = host_tensor([[w, h, w, h] for h, w in image_sizes], boxes.device, boxes.dtype)
        return [torch.minimum(b, limit) for b, limit in zip(boxes.split([len(p) for p in proposals]), limits)]

    def postprocess(self, scores: Tensor, deltas: Tensor, proposals: list[Tensor],
                    image_sizes: list[tuple[int, int]]) -> list[dict]:
        """scores: (R, num_classes + 1) class probabilities; deltas: per class or agnostic."""
        num_classes = scores.shape[-1]
        scores, deltas = scores.float(), deltas.float()
        boxes = self.box_coder.decode(deltas, torch.cat(proposals))  # (R, K or 1, 4)
        if boxes.shape[1] == 1:
            boxes = boxes.expand(-1, num_classes, -1)
        counts = [len(p) for p in proposals]
        results = []
        for img_boxes, img_scores, size in zip(boxes.split(counts), scores.split(counts), image_sizes):
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


class SamplingTargets(nn.Module):
    """Matching, balanced sampling and the targets of an R-CNN stage's candidates, every image at
    once on padded tensors: the part of sample_proposals before it waits for the sampled counts.
    Its shapes are those of the padding, so train.cuda_graphs replays it as one graph
    (`graphed_sampling`). Holds no parameter."""

    def __init__(self, matcher: Matcher, sampler: BalancedSampler, box_coder: BoxCoder) -> None:
        super().__init__()
        self.matcher = matcher
        self.sampler = sampler
        self.box_coder = box_coder

    def forward(self, gt_boxes: Tensor, gt_valid: Tensor, gt_labels: Tensor, boxes: Tensor, box_valid: Tensor,
                priority: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Ground truth (B, G, ...) and candidates (B, P, ...), padded; priority (2, B, P): the
        sampler's random numbers. Returns, for every candidate: whether it is sampled (B, P), the
        per-image count of those (B,), its matched ground truth (B, P), its class (0: background)
        and box regression target (B, P, 4; zero but for the foreground)."""
        matched, labels = self.matcher(batched_box_iou(gt_boxes, boxes), gt_valid)
        labels = torch.where(box_valid, labels, IGNORE)
        fg, bg = self.sampler(labels, priority)
        sampled = fg | bg
        classes = torch.gather(gt_labels, 1, matched) * fg
        box_targets = matched_box_targets(self.box_coder, boxes, gt_boxes, matched, fg)
        return sampled, sampled.sum(dim=1), matched, classes, box_targets


class BoxHeadLosses(nn.Module):
    """The box head, predictor and losses of an R-CNN stage over its sampled RoIs' pooled features,
    as one module: the part of its training step that train.cuda_graphs captures. It holds the
    RoIHeads' own modules, and is not a submodule of it, so checkpoint keys stay as they are."""

    def __init__(self, heads: RoIHeads) -> None:
        super().__init__()
        self.box_head = heads.box_head
        self.box_predictor = heads.box_predictor
        self.bucketed = heads.bucket_box_rois
        self.beta = heads.box_loss_beta

    @staticmethod
    def capturable(heads: RoIHeads) -> bool:
        """The 2MLP head of the FPN models (Faster, Mask and Cascade R-CNN): linear layers on a
        static number of RoIs. The C4 heads' stage-5 convolutions stay eager (frozen BN, and RoI
        counts that vary in TridentNet)."""
        return isinstance(heads.box_head, MLPHead)

    def forward(self, pooled: Tensor, classes: Tensor, box_targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(classification loss, box loss, the predicted deltas without gradient)."""
        logits, deltas = self.box_predictor(run_roi_head(self.box_head, pooled, self.bucketed))
        return *box_losses(logits, deltas, classes, box_targets, self.beta), deltas.detach()


@dataclass
class RoIHeadsConfig:
    """SimpleDet FPN defaults: RoIAlign 7x7 on P2-P5, 512 RoIs/image with 25% foreground at
    IoU >= 0.5, box std (0.1, 0.1, 0.2, 0.2), test score 0.05, NMS 0.5, 100 detections."""

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

    def build(self, in_channels: int, num_classes: int) -> RoIHeads:
        pooler = self.build_pooler()
        box_head = self.box_head.build(in_channels, self.pooler_resolution)
        predictor = BoxPredictor(box_head.out_channels, num_classes, self.class_agnostic)
        return RoIHeads(pooler, box_head, predictor, fg_iou=self.fg_iou, bg_iou=self.bg_iou,
                        batch_size_per_image=self.batch_size_per_image,
                        positive_fraction=self.positive_fraction, box_weights=self.box_weights,
                        score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                        detections_per_img=self.detections_per_img, box_loss_beta=self.box_loss_beta,
                        nms_method=self.nms_method, soft_nms_sigma=self.soft_nms_sigma)
