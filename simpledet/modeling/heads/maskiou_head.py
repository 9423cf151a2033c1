"""Mask Scoring R-CNN's MaskIoU head: predicts, per class, the IoU of a predicted mask with its
object, its regression targets and its loss (SimpleDet's models/msrcnn: MaskIoUConvHead and the
maskiou_compute operator).

Input: the mask branch's pooled RoI feature (14x14) concatenated with the 2x2 max-pooled sigmoid
map (28x28 -> 14x14) of the RoI's class. Three 3x3 convs and one 3x3 stride-2 conv (256, ReLU),
two fully connected layers (1024, ReLU) and one output per class, background included (as the box
classifier). Trained with 0.5 x squared error on the foreground RoIs' own class; at test time a
mask's score is its detection's classification score x the predicted IoU of its class.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError


class MaskIoUHead(nn.Module):
    """(R, C + 1, S, S) pooled feature and mask map -> (R, num_classes + 1) predicted mask IoUs."""

    def __init__(self, *, in_channels: int, resolution: int, num_classes: int, num_convs: int, conv_dim: int,
                 fc_dim: int) -> None:
        super().__init__()
        dims = [in_channels] + [conv_dim] * num_convs
        # all convs keep the size but the last, which halves it (SimpleDet: 14x14 -> 7x7)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2 if i == num_convs - 1 else 1, padding=1)
                                   for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])))
        out_size = (resolution - 1) // 2 + 1
        self.fcs = nn.ModuleList([nn.Linear(conv_dim * out_size * out_size, fc_dim), nn.Linear(fc_dim, fc_dim)])
        self.pred = nn.Linear(fc_dim, num_classes + 1)
        # SimpleDet's inits: msra (He, fan_out) for the convs, Xavier uniform fan_in x 3 for the fcs
        # (He uniform with a=1), N(0, 0.01) for the output
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for fc in self.fcs:
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.pred.weight, std=0.01)
        nn.init.zeros_(self.pred.bias)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x), inplace=True)
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x), inplace=True)
        return self.pred(x)


def maskiou_input(pooled: Tensor, mask_probs: Tensor) -> Tensor:
    """The head's input: pooled RoI features (R, C, S, S) and each RoI's class mask probabilities
    (R, 1, 2S, 2S), max-pooled 2x2 to the features' size and concatenated after them."""
    return torch.cat([pooled, F.max_pool2d(mask_probs.to(pooled.dtype), kernel_size=2, stride=2)], dim=1)


@torch.no_grad()
def mask_area_ratio(gt_masks: list[Tensor], rois: list[Tensor], gt_index: list[Tensor], to_original: Tensor
                    ) -> Tensor:
    """(R,) the share of each RoI's matched ground-truth mask that lies inside the RoI, counted in
    the mask's own pixels: SimpleDet's mask_ratio (inside / (whole + 1e-4), at least 1e-10).

    gt_masks[i] (G, H, W) in the input image's pixels; rois[i] (R_i, 4) in the resized image's,
    scaled by to_original (as mask_targets does). A pixel is inside when its centre is, the rule
    of the mask targets' RoIAlign (aligned=True). Counts come from a summed-area table of each
    ground-truth mask: four lookups per RoI, no loop over RoIs."""
    out = []
    for masks, boxes, index, scale in zip(gt_masks, rois, gt_index, to_original):
        if len(boxes) == 0:
            out.append(boxes.new_zeros((0,)))
            continue
        h, w = masks.shape[-2:]
        table = F.pad(masks.to(torch.float64).cumsum(1).cumsum(2), (1, 0, 1, 0))  # (G, H + 1, W + 1)
        # pixel p's centre p + 0.5 lies in [x1, x2) for p in [ceil(x1 - 0.5), ceil(x2 - 0.5))
        edges = (boxes.to(torch.float64) * scale.to(torch.float64) - 0.5).ceil().long()
        x1, x2 = edges[:, 0].clamp(0, w), edges[:, 2].clamp(0, w)
        y1, y2 = edges[:, 1].clamp(0, h), edges[:, 3].clamp(0, h)
        x2, y2 = torch.maximum(x1, x2), torch.maximum(y1, y2)
        t = table[index]
        rows = torch.arange(len(boxes), device=boxes.device)
        inside = t[rows, y2, x2] - t[rows, y1, x2] - t[rows, y2, x1] + t[rows, y1, x1]
        whole = t[rows, h, w]
        out.append((inside / (whole + 1e-4)).clamp(min=1e-10).float())
    return torch.cat(out)


@torch.no_grad()
def maskiou_targets(mask_probs: Tensor, mask_goal: Tensor, area_ratio: Tensor) -> Tensor:
    """(R,) IoU of each predicted mask (probabilities (R, S, S) > 0.5) with its ground truth, as
    SimpleDet's maskiou_compute: the intersection is counted on the RoI's S x S target (mask_goal,
    binary), the ground truth's area is its whole instance's (the target's area / area_ratio, in
    the same grid units), the union is at least 1."""
    predicted = (mask_probs > 0.5).float()
    intersection = (predicted * mask_goal).sum(dim=(1, 2))
    gt_area = mask_goal.sum(dim=(1, 2)) / area_ratio
    union = (gt_area + predicted.sum(dim=(1, 2)) - intersection).clamp(min=1)
    return intersection.clamp(min=0) / union


def maskiou_loss(predicted: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """0.5 x squared error of the labels' predicted IoUs, summed and divided by the number of RoIs
    (SimpleDet: over the foreground RoIs, at least 1). No RoI: a zero that keeps the graph."""
    if labels.numel() == 0:
        return predicted.sum() * 0
    picked = predicted.float().gather(1, labels[:, None])[:, 0]
    return 0.5 * ((picked - targets) ** 2).sum() / len(labels)


def mask_scores(predicted: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
    """(n,) the mask score of each detection: its classification score x its class's predicted IoU."""
    # gathered, not indexed by arange(n): an exported graph keeps n symbolic
    return scores * predicted.float().gather(1, labels[:, None])[:, 0]


@dataclass
class MaskIoUHeadConfig:
    """SimpleDet's MaskIoUConvHead: on the mask branch's 14x14 pooled features, 4 convs of 256 (the
    last with stride 2), 2 fcs of 1024."""

    num_convs: int = 4
    conv_dim: int = 256
    fc_dim: int = 1024

    def build(self, in_channels: int, resolution: int, num_classes: int) -> MaskIoUHead:
        """in_channels: the pooled features' (the mask map adds one); resolution: their size."""
        for name in ("num_convs", "conv_dim", "fc_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"model.maskiou_head.{name} must be at least 1, got {getattr(self, name)}")
        return MaskIoUHead(in_channels=in_channels + 1, resolution=resolution, num_classes=num_classes,
                           num_convs=self.num_convs, conv_dim=self.conv_dim, fc_dim=self.fc_dim)
