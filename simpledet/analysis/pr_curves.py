"""Per-class precision-recall curves, read from COCOeval's accumulated `eval["precision"]` array
[T IoU thresholds, R recall points, K classes, A area ranges, M maxDets] (pycocotools and
faster-coco-eval alike). COCO's parameters are fixed here: T = 0.50:0.05:0.95, R = 0:0.01:1, area
'all' first, maxDets 100 last. An entry is precision at that recall (0 past the highest recall
reached) and -1 for a class without ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simpledet.analysis.figures import new_figure, save_png

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class ClassCurve:
    name: str
    at_iou50: np.ndarray | None  # [R] precision at IoU 0.5; None: the class has no ground truth
    iou_mean: np.ndarray | None  # [R] precision averaged over the 10 IoU thresholds

    @property
    def ap50(self) -> float:
        return math.nan if self.at_iou50 is None else float(self.at_iou50.mean())

    @property
    def ap(self) -> float:
        return math.nan if self.iou_mean is None else float(self.iou_mean.mean())


def class_curves(precision: np.ndarray, names: list[str]) -> list[ClassCurve]:
    """One curve pair per class, area 'all' and maxDets 100. AP is each curve's mean, as COCO
    averages its 101 recall points."""
    precision = np.asarray(precision, dtype=np.float64)
    expected = (len(IOU_THRESHOLDS), len(RECALL_POINTS), len(names))
    if precision.ndim != 5 or precision.shape[:3] != expected:
        raise ValueError(f"precision must be [T, R, K, A, M] with T, R, K = {expected}, got {precision.shape}")
    all_areas_100 = precision[:, :, :, 0, -1]  # [T, R, K]
    curves = []
    for k, name in enumerate(names):
        per_iou = all_areas_100[:, :, k]
        if (per_iou < 0).any():
            curves.append(ClassCurve(name, None, None))
        else:
            curves.append(ClassCurve(name, per_iou[0].copy(), per_iou.mean(axis=0)))
    return curves


def plot_pr_curves(curves: list[ClassCurve], path: str | Path) -> Path:
    """A grid with one panel per class: precision against recall at IoU 0.5 and averaged over
    IoU 0.5:0.95, with both APs in the title."""
    columns = max(1, math.ceil(math.sqrt(len(curves))))
    rows = max(1, math.ceil(len(curves) / columns))
    figure = new_figure(2.6 * columns, 2.4 * rows)
    for i, curve in enumerate(curves):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.tick_params(labelsize=7)
        if curve.at_iou50 is None:
            axes.set_title(curve.name, fontsize=9)
            axes.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8)
            continue
        axes.plot(RECALL_POINTS, curve.at_iou50, label="IoU 0.5")
        axes.plot(RECALL_POINTS, curve.iou_mean, linestyle="--", label="IoU 0.5:0.95")
        axes.set_title(f"{curve.name}\nAP50 {curve.ap50:.3f}  AP {curve.ap:.3f}", fontsize=9)
        if i == 0:
            axes.legend(fontsize=7, loc="lower left")
    figure.supxlabel("recall")
    figure.supylabel("precision")
    return save_png(figure, path)
