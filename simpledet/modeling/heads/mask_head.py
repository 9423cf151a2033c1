"""Mask R-CNN's mask branch: the 4conv + deconv head, its targets, its loss, and mask pasting.

SimpleDet's MaskFasterRcnn4ConvHead: RoIAlign 14x14 on P2-P5, four 3x3 convolutions (256) with
ReLU, a 2x2 stride-2 deconvolution (256) with ReLU and a 1x1 convolution giving one 28x28 mask
logit map per class (background included, as the box classifier). Trained with sigmoid
cross-entropy on the ground-truth class's map of the foreground RoIs only.

Trained from scratch (config/scratch, config/se), each 3x3 conv is followed by a norm (`norm`: BN,
SyncBN or GroupNorm, named `norms.{i}`) before its ReLU, and SimpleDet's MaskRcnnSe4convHead
(models/se/builder.py) adds a squeeze-excitation (256 -> 64 -> 256, `se.{i}`) after each ReLU.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from simpledet.errors import UserError
from simpledet.modeling.backbones.efficientnet import SqueezeExcite
from simpledet.modeling.layers.roi_pooler import LevelSortedRoIAlign
from simpledet.modeling.norm import make_norm

NORMS = ("bn", "syncbn", "gn")


class MaskHead(nn.Module):
    """(R, C, S, S) pooled RoI features -> (R, num_classes + 1, 2S, 2S) mask logits."""

    def __init__(self, *, in_channels: int, num_classes: int, num_convs: int, conv_dim: int,
                 norm: str | None = None, squeeze_excitation: bool = False) -> None:
        super().__init__()
        dims = [in_channels] + [conv_dim] * num_convs
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(dims[:-1], dims[1:]))
        # None unless asked for, so the plain head's parameters (and checkpoints) stay as they were
        self.norms = nn.ModuleList(make_norm(norm, conv_dim) for _ in range(num_convs)) if norm else None
        self.se = nn.ModuleList(SqueezeExcite(conv_dim, conv_dim // 4) for _ in range(num_convs)) \
            if squeeze_excitation else None
        if self.se is not None:
            for excite in self.se:
                for conv in (excite.fc1, excite.fc2):  # SimpleDet's default init: He fan_in
                    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
        self.deconv = nn.ConvTranspose2d(dims[-1], conv_dim, 2, stride=2)
        self.logits = nn.Conv2d(conv_dim, num_classes + 1, 1)
        # SimpleDet's msra init (Xavier gaussian, fan_out, magnitude 2) is He's fan_out init
        for layer in [*self.convs, self.deconv, self.logits]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = F.relu(x, inplace=True)
            if self.se is not None:
                x = self.se[i](x)
        return self.logits(F.relu(self.deconv(x), inplace=True))


@torch.no_grad()
def mask_targets(gt_masks: list[Tensor], rois: list[Tensor], gt_index: list[Tensor], to_original: Tensor,
                 resolution: int) -> Tensor:
    """Binary (R, resolution, resolution) targets: each RoI's matched ground-truth mask, cropped
    and resized by RoIAlign, then thresholded at 0.5 (SimpleDet rasterises polygons into the RoI
    grid, which is binary too).

    gt_masks[i] is (G, H, W) in the input image's pixels; rois[i] (R_i, 4) are in the resized
    image's pixels, so they are scaled to the mask's frame first (to_original: ImageSizes's, on the
    device): no mask is ever resized. One RoIAlign call per image; aligned=True puts pixel centres
    at half-integers, so a box (x1, y1, x2, y2) covers exactly the pixels [x1, x2) x [y1, y2). Bins
    are averaged over an adaptive grid of samples (sampling_ratio 0), as in detectron2.
    """
    out = []
    for masks, boxes, index, scale in zip(gt_masks, rois, gt_index, to_original):
        if len(boxes) == 0:
            out.append(boxes.new_zeros((0, resolution, resolution)))
            continue
        scaled = boxes.float() * scale
        indexed = torch.cat([index[:, None].to(scaled), scaled], dim=1)  # the batch axis picks the gt
        crops = roi_align(masks[:, None].to(scaled), indexed, (resolution, resolution), spatial_scale=1.0,
                          sampling_ratio=0, aligned=True)
        out.append((crops[:, 0] >= 0.5).float())
    return torch.cat(out)


def mask_loss(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """Mean sigmoid cross-entropy over the pixels of each RoI's own class map (SimpleDet divides
    by the number of target pixels too). No foreground RoI: a zero that keeps the graph."""
    if labels.numel() == 0:
        return logits.sum() * 0
    picked = logits[torch.arange(len(labels), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked.float(), targets)


def class_mask_probs(logits: Tensor, labels: Tensor) -> Tensor:
    """(R, 1, S, S) sigmoid probabilities of the map of each detection's predicted class."""
    picked = logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return picked.float().sigmoid()[:, None]


def _paste_weights(start: Tensor, end: Tensor, length: int, size: int) -> Tensor:
    """(N, length, size) bilinear weights along one axis: image pixel p of box [start, end]
    (inclusive integer ends) reads mask cell src = (p - start + 0.5) * size / n - 0.5, n = end -
    start + 1, clamped at 0, which is F.interpolate(align_corners=False) resizing the mask to n
    pixels; pixels outside the box get no weight."""
    n = (end - start + 1).clamp(min=1).float()
    p = torch.arange(length, device=start.device, dtype=torch.int64)
    dst = (p[None] - start[:, None]).float()
    src = ((size / n)[:, None] * (dst + 0.5) - 0.5).clamp(min=0)
    low = src.floor()
    frac = src - low
    low = low.long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    inside = ((p[None] >= start[:, None]) & (p[None] <= end[:, None])).float()
    weights = start.new_zeros((start.shape[0], length, size), dtype=torch.float32)
    weights.scatter_add_(2, low[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(2, high[..., None], (frac * inside)[..., None])
    return weights


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1) -> Tensor:
    """(N, 1, S, S) mask probabilities placed in their boxes (N, 4) on an image of image_size
    (h, w): (N, 1, h, w), zero outside each box.

    torchvision's paste_masks_in_image, batched: the mask gets a zero border of `padding`
    cells, its box is widened by the same proportion and truncated to integers, and the mask is
    resized bilinearly to the box. Bilinear resizing is separable, so each mask becomes
    rows @ mask @ cols^T with (h, S + 2) and (w, S + 2) weight matrices: one batched matmul
    instead of a resize per box."""
    h, w = image_size
    if not torch.compiler.is_compiling() and len(masks) == 0:  # a traced graph takes the general path
        return masks.new_zeros((0, 1, h, w))
    size = masks.shape[-1] + 2 * padding
    padded = F.pad(masks[:, 0].float(), (padding,) * 4)
    scale = size / masks.shape[-1]
    boxes = boxes.float()
    half_w, half_h = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale, (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx, cy = (boxes[:, 2] + boxes[:, 0]) * 0.5, (boxes[:, 3] + boxes[:, 1]) * 0.5
    # truncation towards zero, as torchvision's .to(int64)
    x1, x2 = (cx - half_w).to(torch.int64), (cx + half_w).to(torch.int64)
    y1, y2 = (cy - half_h).to(torch.int64), (cy + half_h).to(torch.int64)
    rows = _paste_weights(y1, y2, h, size)
    cols = _paste_weights(x1, x2, w, size)
    return torch.bmm(torch.bmm(rows, padded), cols.transpose(1, 2))[:, None]


@dataclass
class MaskHeadConfig:
    """SimpleDet's mask branch (config/mask_r50v1_fpn_1x.py, MaskParam / MaskRoiParam): RoIAlign
    14x14 on P2-P5, four 3x3 convs of 256 (dim_reduced), one 2x deconvolution to 28x28 (the
    masks, and their targets, are twice the pooled size)."""

    in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5")
    pooler_resolution: int = 14
    pooler_sampling_ratio: int = 2
    num_convs: int = 4
    conv_dim: int = 256
    # from scratch: a norm after each conv ("bn", "syncbn", "gn"; None: none), SimpleDet's
    # MaskRcnnSe4convHead's squeeze-excitation after each conv's ReLU
    norm: str | None = None
    squeeze_excitation: bool = False

    def build_pooler(self) -> LevelSortedRoIAlign:
        return LevelSortedRoIAlign(list(self.in_features), self.pooler_resolution, self.pooler_sampling_ratio)

    def build(self, in_channels: int, num_classes: int) -> MaskHead:
        if self.norm is not None and self.norm not in NORMS:
            raise UserError(f"model.mask_head.norm must be one of {', '.join(NORMS)} or None, got {self.norm!r}")
        return MaskHead(in_channels=in_channels, num_classes=num_classes, num_convs=self.num_convs,
                        conv_dim=self.conv_dim, norm=self.norm, squeeze_excitation=self.squeeze_excitation)
