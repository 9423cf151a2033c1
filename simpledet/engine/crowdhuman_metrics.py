"""CrowdHuman's AP and MR^-2 with ignore regions, scored as CrowdDet's APMRToolkits scores them
(lib/evaluate, the toolkit SimpleDet's CrowdHuman README points to), class-agnostic, boxes only.

- Boxes (ground truth and detections) are clipped to the image: x1 to [0, W - 1], x2 to [0, W]
  (y alike), as the toolkit clips them.
- Per image, detections in descending score order are matched greedily (Caltech rule): a
  detection takes the unmatched person it overlaps most with IoU > 0.5 (a true positive);
  failing that, if it covers an ignore region (COCO crowd box) by IoA > 0.5 (intersection over
  the detection's area) it is dropped, counted neither way, and an ignore region absorbs any
  number of detections; otherwise it is a false positive. IoU and IoA add 1e-6 to their
  denominators, as the toolkit does.
- Then all images' counted detections in descending score order (ties keep image order) give
  recall = TP / persons and precision = TP / (TP + FP) after each detection.
- AP: the trapezoid area under those (recall, precision) points, from the first detection's
  point on (no (0, 1) point is added: the toolkit's rule, not COCO's or VOC's interpolation).
- MR^-2: the log-average miss rate (1 - recall) at the 9 FPPI (false positives per image) points
  10^-2, 10^-1.75, ..., 10^0; at each, the miss rate of the first detection whose FPPI reaches
  it (the last detection's when none does). Lower is better.

With no person in the ground truth both are -1 (undefined); with no detection AP is 0 and MR 1.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from simpledet.engine.evaluator import EvalResult, load_ground_truth
from simpledet.errors import UserError

IOU_THRESHOLD = 0.5
# the toolkit's CALTECH_-2 reference points (P. Dollar's), rounded as it rounds them
FPPI_POINTS = (0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000)
_EPS = 1e-6
METRIC_NAMES = ("AP", "MR")


def _corners(xywh: np.ndarray, width: float, height: float) -> np.ndarray:
    boxes = xywh.reshape(-1, 4).astype(np.float64)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0] = np.clip(boxes[:, 0], 0, width - 1)
    boxes[:, 1] = np.clip(boxes[:, 1], 0, height - 1)
    boxes[:, 2] = np.clip(boxes[:, 2], 0, width)
    boxes[:, 3] = np.clip(boxes[:, 3], 0, height)
    return boxes


def _overlaps(dets: np.ndarray, gts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[D, G] IoU and IoA (intersection over the detection's area)."""
    iw = np.minimum(dets[:, None, 2], gts[None, :, 2]) - np.maximum(dets[:, None, 0], gts[None, :, 0])
    ih = np.minimum(dets[:, None, 3], gts[None, :, 3]) - np.maximum(dets[:, None, 1], gts[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    det_area = ((dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]))[:, None]
    gt_area = ((gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]))[None, :]
    return inter / (det_area + gt_area - inter + _EPS), inter / (det_area + _EPS)


def match_image(dets: np.ndarray, scores: np.ndarray, persons: np.ndarray, ignores: np.ndarray,
                threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Per detection (in the given order, which must be by descending score): 1 true positive,
    0 false positive, -1 dropped (in an ignore region). Boxes are x1y1x2y2."""
    iou, _ = _overlaps(dets, persons)
    _, ioa = _overlaps(dets, ignores)
    in_ignore = (ioa > threshold).any(axis=1)
    outcome = np.where(in_ignore, -1, 0)
    candidate = iou > threshold
    # only detections that overlap some person enough can take one; their order decides which
    taken = np.zeros(len(persons), dtype=bool)
    for i in np.flatnonzero(candidate.any(axis=1)):
        free = candidate[i] & ~taken
        if free.any():
            j = int(np.argmax(np.where(free, iou[i], -1.0)))  # the first of equal overlaps, as the toolkit
            taken[j] = True
            outcome[i] = 1
    return outcome


def crowdhuman_scores(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
    """{"AP", "MR"} (fractions) of COCO results records (image_id, bbox [x, y, w, h], score; any
    category) against COCO-format ground truth whose crowd boxes (iscrowd=1) are ignore regions."""
    gt_by_image = defaultdict(list)
    for ann in ground_truth["annotations"]:
        gt_by_image[ann["image_id"]].append(ann)
    det_by_image = defaultdict(list)
    for det in detections:
        det_by_image[det["image_id"]].append(det)
    scores, outcomes = [], []
    num_persons = 0
    for image in ground_truth["images"]:
        anns = gt_by_image[image["id"]]
        width, height = image["width"], image["height"]
        gts = _corners(np.array([a["bbox"] for a in anns], dtype=np.float64), width, height)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        num_persons += int((~crowd).sum())
        dets = det_by_image[image["id"]]
        if not dets:
            continue
        score = np.array([d["score"] for d in dets], dtype=np.float64)
        order = np.argsort(-score, kind="stable")
        boxes = _corners(np.array([d["bbox"] for d in dets], dtype=np.float64), width, height)[order]
        outcome = match_image(boxes, score[order], gts[~crowd], gts[crowd])
        kept = outcome >= 0
        scores.append(score[order][kept])
        outcomes.append(outcome[kept])
    if num_persons == 0:
        return {"AP": -1.0, "MR": -1.0}
    if not scores or not sum(len(s) for s in scores):
        return {"AP": 0.0, "MR": 1.0}
    score, outcome = np.concatenate(scores), np.concatenate(outcomes)
    outcome = outcome[np.argsort(-score, kind="stable")]
    tp = np.cumsum(outcome == 1)
    fp = np.cumsum(outcome == 0)
    recall = tp / num_persons
    precision = tp / (tp + fp)
    ap = float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))
    fppi = fp / len(ground_truth["images"])
    reached = fppi[None, :] >= np.array(FPPI_POINTS)[:, None]
    at = np.where(reached.any(axis=1), reached.argmax(axis=1), len(fppi) - 1)
    with np.errstate(divide="ignore"):  # a miss rate of 0 makes MR 0
        mr = float(np.exp(np.log(1.0 - recall[at]).mean()))
    return {"AP": ap, "MR": mr}


def evaluate_crowdhuman(ground_truth: str | Path | dict, detections: list[dict],
                        source: str | Path | None = None) -> EvalResult:
    """`crowdhuman_scores` against a COCO file or a dataset's `ground_truth` dict (named `source`
    in messages), as an EvalResult whose stats are METRIC_NAMES."""
    if isinstance(ground_truth, dict):
        ann_file, data = Path(source or "the ground truth"), ground_truth
    else:
        ann_file = data = Path(ground_truth)
    gt = load_ground_truth(data)
    unknown = {d["image_id"] for d in detections} - {image["id"] for image in gt["images"]}
    if unknown:
        raise UserError(f"{ann_file}: detections refer to image ids not in this file: {sorted(unknown)[:10]}")
    return EvalResult(stats=crowdhuman_scores(gt, detections), num_images=len(gt["images"]))


def format_crowdhuman(result: EvalResult) -> str:
    return (f" CrowdHuman AP (IoU 0.5, ignore regions)  = {result.stats['AP']:0.4f}\n"
            f" CrowdHuman MR^-2 (FPPI 1e-2..1, lower is better) = {result.stats['MR']:0.4f}\n"
            f" over {result.num_images} images")
