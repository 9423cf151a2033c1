"""What the eval and predict commands do with instance masks beside boxes: mask AP, and masks in
the pictures. (RLE `segmentation` records come from evaluator.detections_to_coco.)"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from simpledet.engine.evaluator import EvalResult, evaluate_detections


def evaluate_masks(ground_truth: str | Path | dict, records: list[dict],
                   source: str | Path | None = None) -> EvalResult:
    """Mask AP ("segm") of COCO result records that carry `segmentation`.

    The box is left out of each record: given one, COCO takes the box's area as the instance's,
    which files masks under the wrong small / medium / large range (detectron2 does the same).
    A record's `mask_score` (Mask Scoring R-CNN), where there is one, ranks its mask instead of its
    `score`, as SimpleDet's mask_test.py rescores masks."""
    segm = [{**{k: v for k, v in r.items() if k not in ("bbox", "mask_score")},
             "score": r.get("mask_score", r["score"])} for r in records]
    return evaluate_detections(ground_truth, segm, iou_type="segm", source=source)


def masks_for_drawing(det: dict, zoom: int = 1) -> Tensor | None:
    """A detection dict's masks as (N, H * zoom, W * zoom) bool for draw_detections, or None."""
    masks = det.get("masks")
    if masks is None:
        return None
    masks = masks.reshape(-1, *masks.shape[-2:]) > 0.5
    if zoom > 1 and len(masks):
        masks = F.interpolate(masks[None].to(torch.uint8), scale_factor=zoom, mode="nearest")[0].bool()
    elif zoom > 1:
        masks = masks.new_zeros((0, masks.shape[-2] * zoom, masks.shape[-1] * zoom))
    return masks
