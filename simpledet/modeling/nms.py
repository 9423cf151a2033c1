"""Non-maximum suppression: per class, hard (torchvision) or soft (Bodla et al. 2017); and many
independent NMS calls, one after another (accel.concurrent_nms makes them at once)."""

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, nms

NMS_METHODS = ("nms", "soft_linear", "soft_gaussian")

# nms_each(groups, iou_thresh, offsets): each (boxes, scores) group's kept indices, best first,
# plus its offset. The RPN takes one of these: nms_each below, or accel.concurrent_nms.
NmsEach = Callable[[list[tuple[Tensor, Tensor]], float, list[int] | None], list[Tensor]]


def nms_each(groups: list[tuple[Tensor, Tensor]], iou_thresh: float, offsets: list[int] | None = None) -> list[Tensor]:
    """torchvision's nms(boxes, scores, iou_thresh) on each group in turn; with `offsets`, each
    group's kept indices plus its offset (where the group starts in a flat layout)."""
    offsets = offsets if offsets is not None else [0] * len(groups)
    return [nms(boxes, scores, iou_thresh) + offset for (boxes, scores), offset in zip(groups, offsets)]


def class_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float, max_keep: int,
              method: str = "nms", sigma: float = 0.5, min_score: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Indices of the kept boxes (best first) and their scores, NMS done within each label.

    Soft-NMS decays the scores of a picked box's same-class neighbours instead of removing them:
    linear s *= 1 - IoU for IoU above the threshold, Gaussian s *= exp(-IoU^2 / sigma). Only the
    first `max_keep` picks matter for the output, so the greedy loop runs at most that many times,
    each pick vectorised over all candidates.
    """
    if method == "nms":
        keep = nms_per_label(boxes, scores, labels, iou_thresh)[:max_keep]
        return keep, scores[keep]
    if method not in NMS_METHODS:
        raise ValueError(f"unknown NMS method {method!r}: use one of {NMS_METHODS}")
    scores = scores.clone()
    alive = scores >= min_score
    picked, picked_scores = [], []
    for _ in range(min(max_keep, len(scores))):
        current = torch.where(alive, scores, torch.full_like(scores, -1.0))
        best = int(current.argmax())
        if current[best] < min_score:
            break
        picked.append(best)
        picked_scores.append(scores[best].clone())
        alive[best] = False
        same = alive & (labels == labels[best])
        iou = box_iou(boxes[best:best + 1], boxes)[0]
        if method == "soft_linear":
            decay = torch.where(iou > iou_thresh, 1.0 - iou, torch.ones_like(iou))
        else:
            decay = torch.exp(-(iou * iou) / sigma)
        scores = torch.where(same, scores * decay, scores)
        alive &= scores >= min_score
    index = torch.tensor(picked, dtype=torch.int64, device=boxes.device)
    kept_scores = torch.stack(picked_scores) if picked_scores else scores.new_zeros(0)
    return index, kept_scores


def nms_per_label(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float) -> Tensor:
    """torchvision's batched_nms, or offset_nms in a graph being traced or exported: batched_nms
    chooses its method by the box count, which a graph knows only at run time."""
    if torch.compiler.is_compiling():
        return offset_nms(boxes, scores, labels, iou_thresh)
    return batched_nms(boxes, scores, labels, iou_thresh)


def offset_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float) -> Tensor:
    """NMS within each label as one NMS call: each label's boxes are moved by label x (the largest
    coordinate + 1), so boxes of different labels never overlap. batched_nms does this below its
    size threshold and loops over the labels above it. No box needs to exist (the zero joined to
    the coordinates)."""
    largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    moved = boxes + (labels.to(boxes) * (largest + 1))[:, None]
    return nms(moved, scores, iou_thresh)
