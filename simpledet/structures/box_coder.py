"""Box regression targets: (dx, dy, dw, dh) relative to a reference box, as in R-CNN.

The arithmetic follows torchvision's BoxCoder step for step (no "+1" in widths, centre at x1 + w/2),
so decoded boxes are bit-identical to torchvision's on the same inputs. The per-coordinate weights
are the inverse of SimpleDet's regression std: std (0.1, 0.1, 0.2, 0.2) == weights (10, 10, 5, 5).
"""

import math

import torch
from torch import Tensor

# exp() of a larger dw/dh would overflow; log(1000 / 16) is the bound every R-CNN uses.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    def __init__(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = DEFAULT_SCALE_CLAMP) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas (..., 4) that turn `reference` boxes into `target` boxes (both x1y1x2y2, same shape)."""
        wx, wy, ww, wh = self.weights
        ref_w = reference[..., 2] - reference[..., 0]
        ref_h = reference[..., 3] - reference[..., 1]
        ref_cx = reference[..., 0] + 0.5 * ref_w
        ref_cy = reference[..., 1] + 0.5 * ref_h
        tgt_w = target[..., 2] - target[..., 0]
        tgt_h = target[..., 3] - target[..., 1]
        tgt_cx = target[..., 0] + 0.5 * tgt_w
        tgt_cy = target[..., 1] + 0.5 * tgt_h
        dx = wx * (tgt_cx - ref_cx) / ref_w
        dy = wy * (tgt_cy - ref_cy) / ref_h
        dw = ww * torch.log(tgt_w / ref_w)
        dh = wh * torch.log(tgt_h / ref_h)
        return torch.stack((dx, dy, dw, dh), dim=-1)

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes from deltas.

        deltas: (..., 4 * K) for K boxes per reference (K classes, or 1); reference: (..., 4),
        broadcastable against deltas' leading dims. Returns (..., K, 4) boxes, x1y1x2y2.
        """
        deltas = deltas.to(reference.dtype)
        wx, wy, ww, wh = self.weights
        ref_w = reference[..., 2] - reference[..., 0]
        ref_h = reference[..., 3] - reference[..., 1]
        ref_cx = reference[..., 0] + 0.5 * ref_w
        ref_cy = reference[..., 1] + 0.5 * ref_h

        dx = deltas[..., 0::4] / wx
        dy = deltas[..., 1::4] / wy
        dw = (deltas[..., 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3::4] / wh).clamp(max=self.scale_clamp)

        cx = dx * ref_w[..., None] + ref_cx[..., None]
        cy = dy * ref_h[..., None] + ref_cy[..., None]
        w = torch.exp(dw) * ref_w[..., None]
        h = torch.exp(dh) * ref_h[..., None]
        half_w = 0.5 * w  # exact (a power of two): the same bits as torchvision's tensor(0.5) * w
        half_h = 0.5 * h
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
