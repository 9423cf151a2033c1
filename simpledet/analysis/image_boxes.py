"""Ground truth (COCO format) and COCO result records, grouped by image as numpy arrays: what the
confusion matrix, the worst images and VOC's mAP all start from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simpledet.errors import UserError


@dataclass
class ImageBoxes:
    """One image's boxes, x1y1x2y2 in pixels; classes are indices 0..K-1 into `class_names`."""

    gt_boxes: np.ndarray  # [G, 4] float64
    gt_classes: np.ndarray  # [G] int64
    gt_ignored: np.ndarray  # [G] bool: crowd regions and boxes marked `ignore` (VOC's difficult)
    det_boxes: np.ndarray  # [D, 4] float64
    det_classes: np.ndarray  # [D] int64
    det_scores: np.ndarray  # [D] float64
    det_indices: np.ndarray  # [D] int64: each detection's position in the records list


def class_names(ground_truth: dict) -> list[str]:
    """Category names in category-id order, the order of our labels 1..K and of COCOeval's K axis."""
    return [str(c["name"]) for c in sorted(ground_truth["categories"], key=lambda c: c["id"])]


def _xywh_to_xyxy(boxes: list) -> np.ndarray:
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _class_indices(category_ids: list[int], index_of: dict[int, int], what: str) -> np.ndarray:
    try:
        return np.array([index_of[c] for c in category_ids], dtype=np.int64)
    except KeyError as e:
        i = category_ids.index(e.args[0])
        raise UserError(f"{what} #{i} has category id {e.args[0]}, which the ground truth does not list") from None


def group_by_image(ground_truth: dict, records: list[dict]) -> dict[int, ImageBoxes]:
    """Every ground-truth image's boxes (images without any get empty arrays), in the ground
    truth's image order; detections keep their order in `records` within an image."""
    index_of = {c["id"]: k for k, c in enumerate(sorted(ground_truth["categories"], key=lambda c: c["id"]))}
    image_ids = [int(im["id"]) for im in ground_truth["images"]]
    known = set(image_ids)
    for i, record in enumerate(records):
        if record["image_id"] not in known:
            raise UserError(f"detection #{i} refers to image id {record['image_id']}, not in the ground truth")
    anns = ground_truth["annotations"]

    gt_image = np.array([a["image_id"] for a in anns], dtype=np.int64)
    gt_boxes = _xywh_to_xyxy([a["bbox"] for a in anns])
    gt_classes = _class_indices([a["category_id"] for a in anns], index_of, "annotation")
    gt_ignored = np.array([bool(a.get("iscrowd", 0) or a.get("ignore", 0)) for a in anns], dtype=bool)
    det_image = np.array([r["image_id"] for r in records], dtype=np.int64)
    det_boxes = _xywh_to_xyxy([r["bbox"] for r in records])
    det_classes = _class_indices([r["category_id"] for r in records], index_of, "detection")
    det_scores = np.array([r["score"] for r in records], dtype=np.float64)

    gt_rows, det_rows = _rows_by_image(gt_image), _rows_by_image(det_image)
    empty = np.zeros(0, dtype=np.int64)
    grouped = {}
    for image_id in image_ids:
        g, d = gt_rows.get(image_id, empty), det_rows.get(image_id, empty)
        grouped[image_id] = ImageBoxes(gt_boxes[g], gt_classes[g], gt_ignored[g],
                                       det_boxes[d], det_classes[d], det_scores[d], d)
    return grouped


def _rows_by_image(image_of_row: np.ndarray) -> dict[int, np.ndarray]:
    """image id -> the rows that belong to it, in their original order (a stable sort keeps it)."""
    order = np.argsort(image_of_row, kind="stable")
    ids, starts = np.unique(image_of_row[order], return_index=True)
    return {int(i): rows for i, rows in zip(ids, np.split(order, starts[1:]))}
