"""IoU between the boxes of each image of a batch, in one set of kernels for the whole batch."""

import torch
from torch import Tensor


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of (B, N, 4) against (B, M, 4) x1y1x2y2 boxes, image by image: (B, N, M).

    boxes2 may be (M, 4), shared by every image (anchors). The arithmetic is torchvision's
    box_iou, term for term, so the values are bit-identical to stacking box_iou per image; one
    call instead of one per image saves some twenty kernel launches per image."""
    if boxes2.dim() == 2:
        boxes2 = boxes2[None]
    size1 = boxes1[..., 2:] - boxes1[..., :2]  # width and height in one kernel
    size2 = boxes2[..., 2:] - boxes2[..., :2]
    area1 = size1[..., 0] * size1[..., 1]
    area2 = size2[..., 0] * size2[..., 1]
    lt = torch.max(boxes1[:, :, None, :2], boxes2[:, None, :, :2])
    rb = torch.min(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, :, None] + area2[:, None, :] - inter
    return inter / union


def batched_box_iof(boxes: Tensor, regions: Tensor) -> Tensor:
    """The fraction of each box covered by each region, image by image: (B, N, 4) boxes (or
    (N, 4), shared by every image) against (B, M, 4) regions gives (B, N, M), intersection over
    the box's own area (0 for a box of no area)."""
    if boxes.dim() == 2:
        boxes = boxes[None]
    size = boxes[..., 2:] - boxes[..., :2]
    area = size[..., 0] * size[..., 1]
    lt = torch.max(boxes[:, :, None, :2], regions[:, None, :, :2])
    rb = torch.min(boxes[:, :, None, 2:], regions[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    return wh[..., 0] * wh[..., 1] / area[:, :, None].clamp(min=torch.finfo(area.dtype).tiny)
