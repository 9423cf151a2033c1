"""A detection confusion matrix: rows are the ground-truth class, columns the predicted class, and
a last row and column for background. Row `background` counts false detections (nothing there),
column `background` missed objects (nothing predicted). Detections below `score_threshold` are
left out; the rest are matched to ground truth of any class, so class mix-ups show off the
diagonal.

Matching, per image and vectorised: every pair of detection and ground-truth box with IoU >=
`iou_threshold` is a candidate; pairs are ranked by the detection's score, then by IoU. Each
detection keeps its best-ranked pair (its highest-IoU box), then each ground-truth box keeps the
highest-scoring detection that chose it. A detection whose box went to a higher-scoring one counts
as false even if it also overlaps a free box (ultralytics' matrix has the same one-round rule, by
IoU alone). Crowd and `ignore` boxes are counted nowhere, and neither is an unmatched detection
that lies mostly inside one (intersection over the detection's area >= `iou_threshold`, COCO's
crowd rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from simpledet.analysis.figures import new_figure, save_png
from simpledet.analysis.image_boxes import ImageBoxes, class_names, group_by_image
from simpledet.files import atomic_write_text

IOU_THRESHOLD = 0.5
SCORE_THRESHOLD = 0.25  # ultralytics' default for its confusion matrix
BACKGROUND = "background"


@dataclass
class ConfusionMatrix:
    matrix: np.ndarray  # [K + 1, K + 1] int64: ground truth (rows) x predicted (columns), background last
    class_names: list[str]  # K names, background not included
    iou_threshold: float
    score_threshold: float
    errors: dict[int, tuple[int, int]]  # image id -> (missed objects, false detections)

    def to_json(self) -> dict:
        return {"iou_threshold": self.iou_threshold, "score_threshold": self.score_threshold,
                "rows": "ground truth", "columns": "predicted",
                "classes": [*self.class_names, BACKGROUND], "matrix": self.matrix.tolist()}


def image_confusion(boxes: ImageBoxes, num_classes: int, iou_threshold: float = IOU_THRESHOLD,
                    score_threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """One image's [K + 1, K + 1] counts (see the module doc)."""
    background = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    kept = boxes.det_scores >= score_threshold
    det_boxes, det_classes, det_scores = boxes.det_boxes[kept], boxes.det_classes[kept], boxes.det_scores[kept]
    real = ~boxes.gt_ignored
    gt_boxes, gt_classes = boxes.gt_boxes[real], boxes.gt_classes[real]

    iou = box_iou(torch.from_numpy(det_boxes), torch.from_numpy(gt_boxes)).numpy()
    d, g = np.nonzero(iou >= iou_threshold)
    ranked = np.lexsort((-iou[d, g], -det_scores[d]))  # last key sorts first: score, then IoU
    d, g = d[ranked], g[ranked]
    _, first = np.unique(d, return_index=True)  # each detection's best pair
    first.sort()  # back in rank order, so that the next step keeps the highest-ranked claimant
    d, g = d[first], g[first]
    _, first = np.unique(g, return_index=True)  # each box's highest-scoring claimant
    d, g = d[first], g[first]
    np.add.at(matrix, (gt_classes[g], det_classes[d]), 1)

    missed = np.ones(len(gt_boxes), dtype=bool)
    missed[g] = False
    np.add.at(matrix, (gt_classes[missed], background), 1)
    false = np.ones(len(det_boxes), dtype=bool)
    false[d] = False
    false &= ~_inside_ignored(det_boxes, boxes.gt_boxes[boxes.gt_ignored], iou_threshold)
    np.add.at(matrix, (background, det_classes[false]), 1)
    return matrix


def _inside_ignored(det_boxes: np.ndarray, ignored: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each detection's intersection with some ignored region covers >= threshold of it."""
    if len(ignored) == 0 or len(det_boxes) == 0:
        return np.zeros(len(det_boxes), dtype=bool)
    top_left = np.maximum(det_boxes[:, None, :2], ignored[None, :, :2])
    bottom_right = np.minimum(det_boxes[:, None, 2:], ignored[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area = (det_boxes[:, 2:] - det_boxes[:, :2]).prod(axis=1)
    return (intersection >= threshold * area[:, None]).any(axis=1)


def errors_of(matrix: np.ndarray) -> tuple[int, int]:
    """(missed, false) in an image's matrix: objects not found with their class, and detections
    not on an object of their class. A mix-up of classes is both."""
    num_classes = len(matrix) - 1
    correct = int(np.trace(matrix[:num_classes, :num_classes]))
    return int(matrix[:num_classes].sum()) - correct, int(matrix[:, :num_classes].sum()) - correct


def confusion_matrix(ground_truth: dict, records: list[dict], iou_threshold: float = IOU_THRESHOLD,
                     score_threshold: float = SCORE_THRESHOLD) -> ConfusionMatrix:
    """The matrix over a whole set: COCO-format ground truth and COCO result records."""
    return confusion_over_images(group_by_image(ground_truth, records), class_names(ground_truth),
                                 iou_threshold, score_threshold)


def confusion_over_images(images: dict[int, ImageBoxes], names: list[str], iou_threshold: float = IOU_THRESHOLD,
                          score_threshold: float = SCORE_THRESHOLD) -> ConfusionMatrix:
    """The matrix over boxes already grouped by image (image_boxes.group_by_image)."""
    total = np.zeros((len(names) + 1, len(names) + 1), dtype=np.int64)
    errors = {}
    for image_id, boxes in images.items():
        matrix = image_confusion(boxes, len(names), iou_threshold, score_threshold)
        total += matrix
        errors[image_id] = errors_of(matrix)
    return ConfusionMatrix(total, names, iou_threshold, score_threshold, errors)


def _json_text(payload: dict) -> str:
    """Indented JSON with each matrix row on one line, so that the file reads as a table."""
    head = json.dumps({k: v for k, v in payload.items() if k != "matrix"}, indent=2)
    rows = ",\n".join(f"    {json.dumps(row)}" for row in payload["matrix"])
    return head[:-2] + f',\n  "matrix": [\n{rows}\n  ]\n}}\n'  # head[:-2] drops its closing "\n}"


def write_confusion_matrix(result: ConfusionMatrix, json_path: str | Path, png_path: str | Path) -> None:
    """The counts as JSON, and a picture coloured by each row's fractions, counts written in."""
    atomic_write_text(json_path, _json_text(result.to_json()))
    labels = [*result.class_names, BACKGROUND]
    counts = result.matrix
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.35 * len(labels), 30)
    figure = new_figure(size + 1, size)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="fraction of the row")
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels, rotation=90)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    axes.set_title(f"confusion at IoU {result.iou_threshold:g}, score >= {result.score_threshold:g}")
    if len(labels) <= 30:  # beyond that the numbers no longer fit their cells
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if fractions[row, column] > 0.5 else "black"
                axes.text(column, row, str(count), ha="center", va="center", fontsize=8, color=colour)
    save_png(figure, png_path)
