"""FreeAnchor's learning-to-match loss (Zhang et al., 2019), as SimpleDet computes it
(models/FreeAnchor/ops.py): a likelihood that each object is detected by some anchor of its bag,
and a likelihood that every anchor not detecting an object predicts background.

Positive part: each object's bag is its `bag_size` anchors of highest IoU. An anchor's chance of
detecting the object is its class probability times exp(-box_loss_weight * smooth-L1 of its
deltas to the object); the bag's chance is their mean-max, sum_i w_i p_i with w_i proportional to
1 / (1 - p_i). The loss is -alpha * log(bag chance), summed and divided by the number of objects.

Negative part: every anchor's decoded box is compared with the objects; IoU below `iou_thresh`
gives 0, the object's best IoU gives 1, linear between. Each anchor takes the object of highest
such value (SimpleDet's argmax: one object, and so one class, per anchor) and its probability of
that class is scaled by (1 - value), treated as a constant. The focal-like term
-(1 - alpha) * p^gamma * log(1 - p) is summed over anchors and classes and divided by the number
of objects times bag_size. Images without objects contribute nothing (SimpleDet's padding rule).

Batched over images, objects and anchors: padded objects (`PaddedGroundTruth.valid` False) count
as SimpleDet's padded rows do, with probability 1 in the positive part and IoU 0 in the negative.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from simpledet.modeling.box_coder import BoxCoder
from simpledet.modeling.box_iou import batched_box_iou
from simpledet.structures.ground_truth import PaddedGroundTruth


class FreeAnchorLoss:
    """Callable: (logits (B, M, K), deltas (B, M, 4), anchors (M, 4), ground truth) -> the two
    losses. Column k of the logits is label k + 1."""

    def __init__(self, box_coder: BoxCoder, *, alpha: float, gamma: float, bag_size: int, iou_thresh: float,
                 box_loss_beta: float, box_loss_weight: float) -> None:
        self.box_coder = box_coder
        self.alpha = alpha
        self.gamma = gamma
        self.bag_size = bag_size
        self.iou_thresh = iou_thresh
        self.box_loss_beta = box_loss_beta
        self.box_loss_weight = box_loss_weight

    def __call__(self, logits: Tensor, deltas: Tensor, anchors: Tensor, gt: PaddedGroundTruth) -> dict[str, Tensor]:
        probs = torch.sigmoid(logits.float())
        deltas = deltas.float()
        valid = gt.valid
        # a unit box (0, 0, 1, 1) in place of padded objects: encoding against their zero-size boxes
        # gives inf, which would reach the gradients through the masked-out branch. Made on the
        # device: a tensor from host values would be a copy a CUDA graph capture refuses
        unit_box = (torch.arange(4, device=gt.boxes.device) >= 2).to(gt.boxes.dtype)
        boxes = torch.where(valid[..., None], gt.boxes, unit_box)
        columns = (gt.labels - 1).clamp(min=0)
        num_objects = valid.sum().clamp(min=1)
        positive = self.positive_loss(probs, deltas, anchors, boxes, columns, valid) / num_objects
        negative = self.negative_loss(probs, deltas, anchors, boxes, columns, valid) / (num_objects * self.bag_size)
        return {"loss_positive": positive, "loss_negative": negative}

    def positive_loss(self, probs: Tensor, deltas: Tensor, anchors: Tensor, boxes: Tensor, columns: Tensor,
                      valid: Tensor) -> Tensor:
        """-alpha * log(mean-max of each object's bag), summed over objects (not yet normalised)."""
        num_images, num_anchors, num_columns = probs.shape
        num_objects = boxes.shape[1]
        k = min(self.bag_size, num_anchors)
        bag = batched_box_iou(boxes, anchors).topk(k, dim=2).indices  # (B, G, k)
        # each bag anchor's probability of its object's class, by one gather on (anchor, column)
        flat = (bag * num_columns + columns[..., None]).flatten(1)
        cls_prob = torch.gather(probs.flatten(1), 1, flat).view(num_images, num_objects, k)
        bag_deltas = torch.gather(deltas, 1, bag.flatten(1)[..., None].expand(-1, -1, 4))
        bag_deltas = bag_deltas.view(num_images, num_objects, k, 4)
        targets = self.box_coder.encode(anchors[bag], boxes[:, :, None].expand(-1, -1, k, -1))
        box_loss = F.smooth_l1_loss(bag_deltas, targets, beta=self.box_loss_beta, reduction="none")
        box_prob = torch.exp(-self.box_loss_weight * box_loss.sum(-1))
        matched = torch.where(valid[..., None], cls_prob * box_prob, 1.0)
        # mean-max: a weighted mean that leans towards the bag's best anchor as training sharpens
        weight = 1.0 / (1.0 - matched).clamp(min=1e-12)
        weight = weight / weight.sum(-1, keepdim=True)
        bag_prob = (weight * matched).sum(-1)
        return -self.alpha * torch.log(bag_prob.clamp(1e-12, 1.0)).sum()

    def negative_loss(self, probs: Tensor, deltas: Tensor, anchors: Tensor, boxes: Tensor, columns: Tensor,
                      valid: Tensor) -> Tensor:
        """-(1 - alpha) * p^gamma * log(1 - p) with p the background-discounted class probability,
        summed over anchors and classes (not yet normalised)."""
        with torch.no_grad():
            predicted = self.box_coder.decode(deltas, anchors)[:, :, 0]  # (B, M, 4)
            iou = torch.where(valid[..., None], batched_box_iou(boxes, predicted), 0.0)  # (B, G, M)
            best = iou.amax(dim=2, keepdim=True).clamp(min=self.iou_thresh + 1e-12)
            object_prob = ((iou - self.iou_thresh) / (best - self.iou_thresh)).clamp(0.0, 1.0)
            # torch.max returns the first of equal values, as MXNet's argmax: with no overlap, object 0
            anchor_prob, anchor_object = object_prob.max(dim=1)  # (B, M)
            anchor_valid = torch.gather(valid, 1, anchor_object)
            anchor_column = torch.gather(columns, 1, anchor_object)
            box_prob = torch.zeros_like(probs).scatter_(2, anchor_column[..., None], anchor_prob[..., None])
        prob = torch.where(anchor_valid[..., None], probs * (1.0 - box_prob), 0.0)
        focal = prob ** self.gamma * -torch.log((1.0 - prob).clamp(1e-12, 1.0))
        return (1.0 - self.alpha) * focal.sum()
