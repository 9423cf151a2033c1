"""RepPoints' geometry and targets (SimpleDet's models/RepPoints/point_ops.py), batched over
images, points and objects with no Python loop over any of them.

- `grid_points`: one point per feature-map cell at (x * stride, y * stride): the cell's corner,
  not its centre (SimpleDet's _gen_points).
- `points_to_boxes`: a set of points -> a box, by min-max or by the moment transform (mean +-
  std x exp(learnt transfer)).
- `point_targets`: the initial stage's assignment. Each object picks its level from its size,
  floor(log2(sqrt(w h) / scale)) clamped to the levels present, and takes the `num_pos` points of
  that level nearest its centre (distance measured in object widths / heights); a point claimed by
  several objects goes to the nearest. Other points are ignored (-1), not background: this stage
  has no classification.
- `iou_targets`: the refining stage's assignment against the boxes of the initial points:
  IoU >= pos_iou foreground, < neg_iou background, in between ignored, and each object's best
  boxes (IoU > min_pos_iou) foreground too, labelled with the object each box itself overlaps most
  (SimpleDet's _iou_assign).
Labels are 1..K for foreground, 0 background, -1 ignored; ties go to the lower index, as MXNet's
sort-based topk gives them.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from simpledet.modeling.box_iou import batched_box_iou
from simpledet.structures.ground_truth import PaddedGroundTruth

TRANSFORMS = ("minmax", "partial_minmax", "moment")


class Points(NamedTuple):
    """A padded batch's points: each level's (H_i * W_i, 3) rows of (x, y, stride), and all of
    them in one tensor, level after level (the order of the head's concatenated outputs)."""

    levels: list[Tensor]
    all: Tensor


def grid_points(height: int, width: int, stride: int, device: torch.device) -> Tensor:
    """(height * width, 3) rows (x, y, stride), row-major like a feature map's flattened cells."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) * stride,
                            torch.arange(width, device=device, dtype=torch.float32) * stride, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.full_like(xs.reshape(-1), float(stride))], dim=1)


def points_to_boxes(pts: Tensor, transform: str, moment_transfer: Tensor | None = None) -> Tensor:
    """(..., P, 2) points as (x, y) -> (..., 4) boxes x1y1x2y2.

    minmax: the points' bounding box; partial_minmax: that of the first four points; moment: centre
    at the mean, half sizes the standard deviations (population, over the points) times
    exp(moment_transfer) = exp((tw, th)), a learnt pair shared by every box."""
    x, y = pts[..., 0], pts[..., 1]
    if transform == "partial_minmax":
        x, y = x[..., :4], y[..., :4]
        transform = "minmax"
    if transform == "minmax":
        return torch.stack([x.amin(-1), y.amin(-1), x.amax(-1), y.amax(-1)], dim=-1)
    if transform != "moment":
        raise ValueError(f"unknown point transform {transform!r}: use one of {TRANSFORMS}")
    mean_x, mean_y = x.mean(-1), y.mean(-1)
    # sqrt of the mean squared deviation, as SimpleDet (torch.std would divide by P - 1)
    std_x = (x - mean_x[..., None]).square().mean(-1).sqrt()
    std_y = (y - mean_y[..., None]).square().mean(-1).sqrt()
    scale = moment_transfer.exp()
    half_w, half_h = std_x * scale[0], std_y * scale[1]
    return torch.stack([mean_x - half_w, mean_y - half_h, mean_x + half_w, mean_y + half_h], dim=-1)


def point_targets(points: Tensor, gt: PaddedGroundTruth, scale: float, num_pos: int) -> tuple[Tensor, Tensor]:
    """points (P, 3) rows (x, y, stride) -> labels (B, P) (object's label, or -1) and the assigned
    objects' boxes (B, P, 4) (zero where unassigned)."""
    level = torch.floor(torch.log2(points[:, 2]))
    boxes = gt.boxes
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    gt_level = torch.floor((torch.log2(wh[..., 0] / scale) + torch.log2(wh[..., 1] / scale)) / 2)
    gt_level = gt_level.clamp(min=level.min(), max=level.max())  # (B, G)
    # distance of every point to every object's centre, in units of the object's width / height
    dist = torch.linalg.vector_norm((points[None, None, :, :2] - centre[:, :, None]) / wh[:, :, None], dim=-1)
    eligible = (gt_level[..., None] == level) & gt.valid[..., None]  # (B, G, P)
    dist = torch.where(eligible, dist, torch.inf)
    # each object's num_pos nearest points of its level (stable: ties to the lower index)
    k = min(num_pos, dist.shape[-1])
    nearest = torch.sort(dist, dim=-1, stable=True).indices[..., :k]
    kept = torch.zeros_like(eligible).scatter_(-1, nearest, True)
    dist = torch.where(kept, dist, torch.inf)
    # each point goes to the nearest object that kept it (ties to the lower object index)
    best = dist.min(dim=1, keepdim=True).values  # (B, 1, P)
    owner = (dist == best).to(torch.uint8).argmax(dim=1)  # first index of the minimum
    assigned = torch.isfinite(best[:, 0])
    labels = torch.where(assigned, torch.gather(gt.labels, 1, owner), -1)
    matched = torch.gather(boxes, 1, owner[..., None].expand(-1, -1, 4))
    return labels, torch.where(assigned[..., None], matched, 0.0)


def iou_targets(proposals: Tensor, gt: PaddedGroundTruth, pos_iou: float, neg_iou: float,
                min_pos_iou: float) -> tuple[Tensor, Tensor]:
    """proposals (B, P, 4) -> labels (B, P) (object's label, 0 background, -1 ignored) and the
    assigned objects' boxes (B, P, 4) (zero where not foreground)."""
    iou = batched_box_iou(proposals, gt.boxes)  # (B, P, G)
    iou = torch.where(gt.valid[:, None, :], torch.nan_to_num(iou, nan=0.0), -1.0)
    best_iou = iou.max(dim=2).values
    # first index of each proposal's best object
    best_gt = (iou == best_iou[..., None]).to(torch.uint8).argmax(dim=2)
    assigned = torch.full_like(best_gt, -1)
    assigned = torch.where(best_iou < neg_iou, 0, assigned)
    # every proposal that is some object's best (above min_pos_iou) is foreground
    gt_best = iou.max(dim=1, keepdim=True).values  # (B, 1, G)
    claimed = ((iou == gt_best) & (gt_best > min_pos_iou)).any(dim=2)
    fg = claimed | (best_iou >= pos_iou)
    assigned = torch.where(fg, 1, assigned)
    labels = torch.where(fg, torch.gather(gt.labels, 1, best_gt), assigned)
    matched = torch.gather(gt.boxes, 1, best_gt[..., None].expand(-1, -1, 4))
    return labels, torch.where(fg[..., None], matched, 0.0)
