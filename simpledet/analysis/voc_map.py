"""PASCAL VOC's mAP@0.5, computed from COCO-format ground truth and COCO result records.

Per class, detections are taken in descending score. Each one is compared with the ground-truth
boxes of its class in its image and goes to the box it overlaps most (VOC's rule: that box, even
if already taken). IoU >= 0.5 with a free box is a true positive, with a taken box a duplicate
(false positive); below 0.5, a false positive; on a crowd or `ignore` box (VOC's difficult), neither.
AP is the area under the precision-recall curve with precision made non-increasing: at every
recall point ("all points", VOC2010 and later) or the mean over recall 0, 0.1, ..., 1 (VOC2007's
11 points). Boxes are continuous coordinates (IoU without VOC's +1 pixel), the same boxes COCO
scores. A class without ground truth has no AP (NaN) and is left out of the mean."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from simpledet.analysis.image_boxes import ImageBoxes, class_names, group_by_image
from simpledet.engine.evaluator import category_table

IOU_THRESHOLD = 0.5


@dataclass
class VocResult:
    map50: float  # mean over the classes with ground truth; NaN when none has any
    per_class: dict[str, float]  # name -> AP, NaN: no ground truth
    eleven_point: bool

    def to_json(self) -> dict:
        """For metrics.json: NaN becomes null."""
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"mAP50": clean(self.map50), "method": "11 points" if self.eleven_point else "all points",
                "per_class": {name: clean(ap) for name, ap in self.per_class.items()}}


def average_precision(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False) -> float:
    """Area under a PR curve given at each detection (recall ascending)."""
    if eleven_point:
        # i / 10 exactly: a recall of 3 / 10 reaches the point 0.3 (np.arange(0, 1.1, 0.1) gives 0.30000000000000004)
        points = [precision[recall >= i / 10].max(initial=0.0) for i in range(11)]
        return float(np.mean(points))
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def voc_map(ground_truth: dict, records: list[dict], eleven_point: bool = False,
            iou_threshold: float = IOU_THRESHOLD) -> VocResult:
    names = class_names(ground_truth)
    images = group_by_image(ground_truth, records)
    # One order for every detection (score descending, ties in record order): within an image it
    # decides which of two detections on one box comes first, across images the PR curve.
    scores = np.array([r["score"] for r in records], dtype=np.float64)
    rank = np.empty(len(records), dtype=np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(len(records))

    outcome = np.zeros(len(records), dtype=np.int8)  # 1 true positive, 0 false positive, -1 ignored
    classes = np.zeros(len(records), dtype=np.int64)
    num_positives = np.zeros(len(names), dtype=np.int64)
    for boxes in images.values():
        np.add.at(num_positives, boxes.gt_classes[~boxes.gt_ignored], 1)
        outcome[boxes.det_indices] = _image_outcomes(boxes, rank[boxes.det_indices], iou_threshold)
        classes[boxes.det_indices] = boxes.det_classes

    per_class = {}
    for k, name in enumerate(names):
        if num_positives[k] == 0:
            per_class[name] = math.nan
            continue
        mine = np.nonzero(classes == k)[0]
        ordered = outcome[mine[np.argsort(rank[mine])]]
        ordered = ordered[ordered >= 0]
        true_positives = np.cumsum(ordered == 1)
        recall = true_positives / num_positives[k]
        precision = true_positives / np.arange(1, len(ordered) + 1)
        per_class[name] = average_precision(recall, precision, eleven_point)
    values = [ap for ap in per_class.values() if not math.isnan(ap)]
    return VocResult(float(np.mean(values)) if values else math.nan, per_class, eleven_point)


def _image_outcomes(boxes: ImageBoxes, det_rank: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Each detection of one image: 1 true positive, 0 false positive, -1 on an ignored box."""
    iou = box_iou(torch.from_numpy(boxes.det_boxes), torch.from_numpy(boxes.gt_boxes)).numpy()
    iou[boxes.det_classes[:, None] != boxes.gt_classes[None, :]] = -1.0  # only boxes of its own class
    if iou.shape[1] == 0:
        return np.zeros(len(iou), dtype=np.int8)
    best = iou.argmax(axis=1)
    overlap = iou[np.arange(len(iou)), best]
    hit = overlap >= iou_threshold
    ignored = hit & boxes.gt_ignored[best]
    # Of the detections whose best box is the same counted box, the first in score order takes it;
    # the others are duplicates (false positives).
    counted = np.nonzero(hit & ~ignored)[0]
    counted = counted[np.argsort(det_rank[counted])]
    _, first = np.unique(best[counted], return_index=True)
    outcome = np.zeros(len(iou), dtype=np.int8)
    outcome[counted[first]] = 1
    outcome[ignored] = -1
    return outcome


def format_voc(result: VocResult) -> str:
    """mAP and the per-class table, as fractions like the COCO table."""
    method = "11 points, VOC2007" if result.eleven_point else "all points, VOC2010+"
    lines = [f"VOC mAP @[ IoU=0.50 ] ({method}) = {result.map50:0.3f}"]
    if result.per_class:
        lines += category_table(list(result.per_class.items()))
    return "\n".join(lines)
