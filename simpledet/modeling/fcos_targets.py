"""FCOS's points and the rules that make a point foreground: which object (if any) each point of
every level regresses, all images and objects at once.

Two assignment rules, both "the smallest object whose box holds the point and whose size suits
the point's level", differing in the details:

- SimpleDet's (models/FCOS/input.py): every point inside a box, edges included; a level takes
  the points whose largest distance to the box's sides is in [lower, upper); points in the
  padding below or right of the image are ignored by the classification and centerness losses.
- torchvision's (FCOS.compute_loss): centre sampling (the point within radius x level size of the
  box's centre, on both axes), strictly inside the box, largest distance in (lower, upper).
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from simpledet.structures.image_sizes import ImageSizes


@dataclass
class FCOSPoints:
    """A padded batch's points: each level's (H_i * W_i, 2) x, y in padded-image pixels, ordered
    (y, x) like the flattened head outputs, and the batch's sizes (which points fall in padding)."""

    levels: list[Tensor]
    sizes: ImageSizes

    @property
    def all(self) -> Tensor:
        return torch.cat(self.levels)

    def in_image(self) -> Tensor:
        """(B, P) whether each point lies inside its image rather than in the padding (x < w, y < h)."""
        xy = self.all
        limits = self.sizes.limits.to(xy.device)  # (B, 4) w, h, w, h
        return (xy[None, :, 0] < limits[:, None, 0]) & (xy[None, :, 1] < limits[:, None, 1])


def grid_points(feature_size: tuple[int, int], padded: tuple[int, int], stride: int, offset: float,
                spacing_from_padded: bool, device: torch.device) -> Tensor:
    """(H * W, 2) points of one level. The spacing is the level's stride (SimpleDet), or the padded
    size // feature size per axis, as torchvision's AnchorGenerator places its anchors' centres;
    `offset` (in strides) moves the first point off the corner: SimpleDet's points sit at
    i * stride + stride / 2, torchvision's at i * spacing."""
    h, w = feature_size
    step_y, step_x = (padded[0] // h, padded[1] // w) if spacing_from_padded else (stride, stride)
    xs = torch.arange(w, device=device, dtype=torch.float32) * step_x + offset * stride
    ys = torch.arange(h, device=device, dtype=torch.float32) * step_y + offset * stride
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def level_bounds(points: FCOSPoints, size_bounds: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """(P,) lower and upper bound of each point's level on the largest distance to a box side:
    level i takes [size_bounds[i - 1], size_bounds[i]), the first from 0, the last to infinity."""
    edges = [0.0, *size_bounds, float("inf")]
    device = points.levels[0].device
    counts = torch.tensor([len(level) for level in points.levels], device=device)
    lower = torch.tensor(edges[:-1], device=device).repeat_interleave(counts)
    upper = torch.tensor(edges[1:], device=device).repeat_interleave(counts)
    return lower, upper


def side_distances(xy: Tensor, boxes: Tensor) -> Tensor:
    """(B, P, G, 4) distances from each point to the left, top, right and bottom side of each box
    (negative outside): points (P, 2), boxes (B, G, 4)."""
    x, y = xy[None, :, None, 0], xy[None, :, None, 1]
    b = boxes[:, None]
    return torch.stack([x - b[..., 0], y - b[..., 1], b[..., 2] - x, b[..., 3] - y], dim=-1)


def assign_simpledet(points: FCOSPoints, boxes: Tensor, valid: Tensor, size_bounds: tuple[float, ...]) -> Tensor:
    """(B, P) index of the box each point regresses, -1 for background: inside the box (edges
    included), largest side distance in the level's [lower, upper), the smallest such box (the
    first on equal areas)."""
    ltrb = side_distances(points.all, boxes)
    lower, upper = level_bounds(points, size_bounds)
    reach = ltrb.amax(-1)
    fits = (ltrb.amin(-1) >= 0) & (reach >= lower[None, :, None]) & (reach < upper[None, :, None]) & valid[:, None]
    area = (ltrb[..., 0] + ltrb[..., 2]) * (ltrb[..., 1] + ltrb[..., 3])
    best, matched = torch.where(fits, area, torch.inf).min(-1)
    return torch.where(torch.isfinite(best), matched, -1)


def assign_torchvision(points: FCOSPoints, boxes: Tensor, valid: Tensor, size_bounds: tuple[float, ...],
                       strides: tuple[int, ...], radius: float) -> Tensor:
    """(B, P) index of the box each point regresses, -1 for background, as torchvision's FCOS:
    within radius x stride of the box centre (Chebyshev distance), strictly inside the box, largest
    side distance strictly within the level's bounds, the smallest such box."""
    xy = points.all
    counts = torch.tensor([len(level) for level in points.levels], device=xy.device)
    size = torch.tensor(strides, dtype=torch.float32, device=xy.device).repeat_interleave(counts)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, G, 2)
    near = (xy[None, :, None] - centres[:, None]).abs().amax(-1) < radius * size[None, :, None]
    ltrb = side_distances(xy, boxes)
    lower, upper = level_bounds(points, size_bounds)
    reach = ltrb.amax(-1)
    fits = near & (ltrb.amin(-1) > 0) & (reach > lower[None, :, None]) & (reach < upper[None, :, None]) & valid[:, None]
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # (B, G)
    # torchvision's ranking: the largest 1e8 - area among the fitting boxes
    best, matched = (fits.float() * (1e8 - areas[:, None])).max(-1)
    return torch.where(best < 1e-5, -1, matched)


def matched_distances(xy: Tensor, boxes: Tensor, matched: Tensor) -> Tensor:
    """(B, P, 4) left, top, right, bottom distances from each point to its matched box (to box 0 for
    background points: finite, never used)."""
    picked = torch.gather(boxes, 1, matched.clamp(min=0)[..., None].expand(-1, -1, 4))
    x, y = xy[None, :, 0], xy[None, :, 1]
    return torch.stack([x - picked[..., 0], y - picked[..., 1], picked[..., 2] - x, picked[..., 3] - y], dim=-1)


def centerness(ltrb: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)): 1 at a box's centre, 0 on its sides;
    0 where a side pair is all zero (a point that is not inside)."""
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    ratio_x = lr.amin(-1) / lr.amax(-1).clamp(min=1e-12)
    ratio_y = tb.amin(-1) / tb.amax(-1).clamp(min=1e-12)
    return torch.sqrt((ratio_x * ratio_y).clamp(min=0))
