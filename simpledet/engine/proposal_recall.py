"""Proposal recall, as SimpleDet's rpn_test.py scores an RPN: COCOeval over class-agnostic
proposals (useCats off), average recall over IoU 0.50:0.95 at 100, 300 and 1000 proposals per
image, and by object size at 1000. pycocotools' COCOeval, whose recall array is read directly."""

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from simpledet.engine.evaluator import EvalResult, check_detection_ids, gc_paused, load_ground_truth

MAX_PROPOSALS = (100, 300, 1000)
AR_NAMES = ("AR@100", "AR@300", "AR@1000", "ARs@1000", "ARm@1000", "ARl@1000")


def evaluate_proposals(ground_truth: str | Path | dict, proposals: list[dict],
                       source: str | Path | None = None) -> EvalResult:
    """COCO results records (any category; only boxes and scores count) against the ground truth
    (a COCO file or a dataset's `ground_truth` dict, named `source` in messages). stats: AR_NAMES,
    -1 where there is no ground truth of that size."""
    if isinstance(ground_truth, dict):
        ann_file, data = Path(source or "the ground truth"), ground_truth
    else:
        ann_file = data = Path(ground_truth)
    with gc_paused():
        gt = COCO()
        gt.dataset = load_ground_truth(data)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it indexes
            gt.createIndex()
        check_detection_ids(ann_file, gt, proposals)
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(p) for p in proposals]) if proposals else COCO()
            evaluation = COCOeval(gt, dt, "bbox")
            evaluation.params.useCats = 0
            evaluation.params.maxDets = list(MAX_PROPOSALS)
            evaluation.evaluate()
            evaluation.accumulate()
    recall = np.asarray(evaluation.eval["recall"])  # [T iou, K 1 (no categories), A area, M maxDets]
    stats = {f"AR@{m}": _mean(recall[:, :, 0, i]) for i, m in enumerate(MAX_PROPOSALS)}
    for area, name in ((1, "ARs@1000"), (2, "ARm@1000"), (3, "ARl@1000")):
        stats[name] = _mean(recall[:, :, area, -1])
    return EvalResult(stats=stats, num_images=len(gt.getImgIds()))


def format_recall(result: EvalResult) -> str:
    return "\n".join(f" Average Recall (AR) @[ IoU=0.50:0.95 | {name:>8} ] = {result.stats[name]:.3f}"
                     for name in AR_NAMES)


def _mean(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(values.mean()) if values.size else -1.0
