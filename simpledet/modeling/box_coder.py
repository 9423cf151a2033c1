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
    """Encodes and decodes x and y together, then width and height together: half the kernels
    of a coordinate-by-coordinate form (the heads on a fast GPU are bound by kernel launches),
    with each element's arithmetic, and so its bits, unchanged."""

    def __init__(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = DEFAULT_SCALE_CLAMP) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp
        self._pairs: dict[tuple, tuple] = {}

    def _pair_weights(self, like: Tensor) -> tuple:
        """(x, y) weights and (w, h) weights: a Python number where the two are equal (every zoo
        model), else a 2-vector on `like`'s device, made once per device and dtype (one copy a
        run), which a CUDA graph then reads as its own."""
        key = (like.device, like.dtype)
        if key not in self._pairs:
            wx, wy, ww, wh = self.weights
            self._pairs[key] = (wx if wx == wy else torch.tensor([wx, wy], device=like.device, dtype=like.dtype),
                                ww if ww == wh else torch.tensor([ww, wh], device=like.device, dtype=like.dtype))
        return self._pairs[key]

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas (..., 4) that turn `reference` boxes into `target` boxes (both x1y1x2y2, same shape)."""
        weight_xy, weight_size = self._pair_weights(reference)
        ref_size = reference[..., 2:] - reference[..., :2]
        ref_centre = reference[..., :2] + 0.5 * ref_size
        tgt_size = target[..., 2:] - target[..., :2]
        tgt_centre = target[..., :2] + 0.5 * tgt_size
        d_xy = weight_xy * (tgt_centre - ref_centre) / ref_size
        d_size = weight_size * torch.log(tgt_size / ref_size)
        return torch.cat((d_xy, d_size), dim=-1)

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes from deltas.

        deltas: (..., 4 * K) for K boxes per reference (K classes, or 1); reference: (..., 4),
        broadcastable against deltas' leading dims. Returns (..., K, 4) boxes, x1y1x2y2.
        """
        deltas = deltas.to(reference.dtype)
        deltas = deltas.view(*deltas.shape[:-1], deltas.shape[-1] // 4, 4)  # K given: also with no rows
        weight_xy, weight_size = self._pair_weights(reference)
        ref_size = (reference[..., 2:] - reference[..., :2])[..., None, :]
        ref_centre = reference[..., None, :2] + 0.5 * ref_size

        d_xy = deltas[..., :2] / weight_xy
        d_size = (deltas[..., 2:] / weight_size).clamp(max=self.scale_clamp)
        centre = d_xy * ref_size + ref_centre
        # 0.5 * size: exact (a power of two), the same bits as torchvision's tensor(0.5) * w
        half_size = 0.5 * (torch.exp(d_size) * ref_size)
        return torch.cat((centre - half_size, centre + half_size), dim=-1)


def matched_box_targets(box_coder: BoxCoder, references: Tensor, gt_boxes: Tensor, matched: Tensor,
                        fg: Tensor) -> Tensor:
    """(B, N, 4) regression targets of every reference box (anchors (N, 4) shared by the images, or
    candidates (B, N, 4)) towards its matched ground truth, for losses masked to the foreground
    `fg` (B, N): the same values there as encoding the foreground rows alone, found without a wait
    for the device. Elsewhere zero: a row matched to a padding box would encode to inf or NaN,
    and a NaN target reaches the gradients even where the loss is masked out.
    gt_boxes: (B, G, 4) with G >= 1, as PaddedGroundTruth gives them."""
    if references.dim() == 2:
        references = references[None].expand(len(fg), -1, -1)
    matched_boxes = torch.gather(gt_boxes, 1, matched[..., None].expand(-1, -1, 4))
    return torch.where(fg[..., None], box_coder.encode(references, matched_boxes), 0.0)
