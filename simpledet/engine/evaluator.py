"""COCO-style evaluation of detections, backed by faster_coco_eval.

Stats follow COCOeval exactly: a stat is -1 when no ground truth falls in its
IoU/area slice (e.g. APs on a dataset without small objects, or everything on
a GT file without annotations) and 0 when ground truth exists but nothing
matched (e.g. an empty detection list).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as mask_utils

from simpledet.data.coco import load_coco_json
from simpledet.errors import UserError
from simpledet.files import atomic_write_text

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# Row titles of COCOeval.summarize(), in STAT_NAMES order: (is_ap, iou, area, maxDets).
_STAT_ROWS = (
    (True, "0.50:0.95", "all", 100),
    (True, "0.50", "all", 100),
    (True, "0.75", "all", 100),
    (True, "0.50:0.95", "small", 100),
    (True, "0.50:0.95", "medium", 100),
    (True, "0.50:0.95", "large", 100),
    (False, "0.50:0.95", "all", 1),
    (False, "0.50:0.95", "all", 10),
    (False, "0.50:0.95", "all", 100),
    (False, "0.50:0.95", "small", 100),
    (False, "0.50:0.95", "medium", 100),
    (False, "0.50:0.95", "large", 100),
)

_IOU_TYPES = ("bbox", "segm")


@dataclass
class EvalResult:
    stats: dict[str, float]  # STAT_NAMES -> value in 0..1, or -1 (see module doc)
    per_category: list[tuple[str, float]] = field(default_factory=list)  # (name, AP in 0..1), nan: no GT
    num_images: int = 0
    # COCOeval's eval["precision"]: [T iou, R recall, K category, A area, M maxDets] (analysis/pr_curves.py)
    precision: np.ndarray | None = None


def _quiet(*args: object, **kwargs: object) -> None:
    """Swallows faster_coco_eval's progress messages; we print our own table."""


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """Bool/prob masks (N,H,W) or (N,1,H,W) -> COCO RLEs with str counts (JSON-safe), thresholded
    at 0.5."""
    if masks.dim() == 4:
        masks = masks[:, 0]
    binary = masks > 0.5 if masks.is_floating_point() else masks.bool()
    # Fortran order (H, W, N) is what the RLE encoder expects.
    array = np.asfortranarray(binary.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    rles = mask_utils.encode(array)
    for rle in rles:
        if isinstance(rle["counts"], bytes):
            rle["counts"] = rle["counts"].decode("ascii")
    return rles


def detections_to_coco(outputs: list[dict], images: list, label_to_category_id: dict[int, int],
                       box_decimals: int = 4, score_decimals: int = 6) -> list[dict]:
    """Model outputs (boxes x1y1x2y2, labels, scores[, masks[, mask_scores]]) -> COCO result records,
    for `eval`'s detections.json and `predict`'s output alike.

    images: one per output, each an image id (int) or a dict of the fields that name the image in
    every record ({"file_name": ...}). Boxes become [x, y, w, h], computed in float64 and rounded
    to box_decimals, so that rounding adds no float32 noise; masks become RLE `segmentation`, mask
    scores `mask_score`."""
    if len(outputs) != len(images):
        raise ValueError(f"{len(outputs)} outputs but {len(images)} image ids")
    # A lookup table turns label -> category id into one indexing op per image.
    size = max(label_to_category_id, default=-1) + 1
    lut = torch.full((size,), -1, dtype=torch.int64)
    for label, cat_id in label_to_category_id.items():
        lut[label] = cat_id

    records: list[dict] = []
    for output, image in zip(outputs, images):
        labels = output["labels"].detach().cpu().long()
        if labels.numel() == 0:
            continue
        known = (labels >= 0) & (labels < size)
        cat_ids = torch.full_like(labels, -1)
        cat_ids[known] = lut[labels[known]]
        if (cat_ids < 0).any():
            bad = sorted(set(labels[cat_ids < 0].tolist()))
            raise UserError(
                f"model predicted labels {bad} that have no category id in the dataset's "
                f"label map {label_to_category_id}: does the config's num_classes match the dataset?"
            )
        boxes = output["boxes"].detach().cpu().double()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).round(decimals=box_decimals)
        scores = output["scores"].detach().cpu().double().round(decimals=score_decimals)
        segms = encode_masks(output["masks"]) if "masks" in output else None
        # Mask Scoring R-CNN ranks its masks by their own score (segm AP); the box keeps `score`
        mask_scores = (output["mask_scores"].detach().cpu().double().round(decimals=score_decimals).tolist()
                       if "mask_scores" in output else None)
        where = image if isinstance(image, dict) else {"image_id": int(image)}
        for i, (cat_id, bbox, score) in enumerate(zip(cat_ids.tolist(), xywh.tolist(), scores.tolist())):
            record = {**where, "category_id": cat_id, "bbox": bbox, "score": score}
            if segms is not None:
                record["segmentation"] = segms[i]
            if mask_scores is not None:
                record["mask_score"] = mask_scores[i]
            records.append(record)
    return records


def load_ground_truth(ground_truth: Path | dict) -> dict:
    """COCO ground truth: a file, checked as the datasets check theirs (image records need only
    their ids here), or a dataset's in-memory `ground_truth` (read from VOC, YOLO, ...), copied;
    with what COCOeval takes for granted filled in."""
    if isinstance(ground_truth, dict):
        data = copy.deepcopy(ground_truth)
    else:
        data = load_coco_json(ground_truth, image_files=False)
    for i, ann in enumerate(data["annotations"]):
        # COCOeval uses annotation id 0 as "unmatched"; renumbering 1..N avoids that trap.
        ann["id"] = i + 1
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    return data


def check_detection_ids(ann_file: Path, gt: COCO, detections: list[dict]) -> None:
    """COCO would assert (unknown image) or silently drop (unknown category); say why instead."""
    bad_images = {d["image_id"] for d in detections} - set(gt.getImgIds())
    if bad_images:
        raise UserError(f"{ann_file}: detections refer to image ids not in this file: {sorted(bad_images)[:10]}")
    bad_cats = {d["category_id"] for d in detections} - set(gt.getCatIds())
    if bad_cats:
        raise UserError(f"{ann_file}: detections refer to category ids not in this file: {sorted(bad_cats)[:10]}")


def _is_box_result(d: object) -> bool:
    return isinstance(d, dict) and all(k in d for k in ("image_id", "category_id", "score")) and \
        isinstance(d.get("bbox"), (list, tuple)) and len(d["bbox"]) == 4


def _box_results(ann_file: Path, gt: COCO, detections: list[dict]) -> COCO:
    """The detections as a COCO results object for box evaluation: what loadRes makes, without the
    box polygon it adds to every record for segm use (a third of `simpledet score`'s time on a
    COCO-sized result set). New dicts: the caller's records are left as they were."""
    try:
        annotations = [{**d, "area": d["bbox"][2] * d["bbox"][3], "id": i, "iscrowd": 0}
                       for i, d in enumerate(detections, 1)]
    except (KeyError, TypeError, IndexError):
        i = next(i for i, d in enumerate(detections) if not _is_box_result(d))
        raise UserError(f"{ann_file}: detection #{i} is not a COCO box result "
                        f"(image_id, category_id, bbox [x, y, w, h], score): {str(detections[i])[:120]}") from None
    results = COCO(print_function=_quiet)
    results.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                       "annotations": annotations}
    results.createIndex()
    return results


@contextlib.contextmanager
def gc_paused():
    """Scoring makes and keeps millions of small dicts and lists, none of them garbage. CPython's
    cyclic collector would rescan them again and again as they pile up: paused, a 500,000-result
    set's records are built in 0.2 s instead of 0.65 s. Restored afterwards, whatever happens."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def evaluate_detections(ground_truth: str | Path | dict, detections: list[dict], iou_type: str = "bbox",
                        source: str | Path | None = None) -> EvalResult:
    """Runs COCOeval on COCO result records against the ground truth: a COCO JSON file, or a
    dataset's COCO-format `ground_truth` dict, named `source` in messages. See module doc for -1/0."""
    if iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type must be one of {_IOU_TYPES}, got {iou_type!r}")
    if isinstance(ground_truth, dict):
        ann_file, data = Path(source or "the ground truth"), ground_truth
    else:
        ann_file = data = Path(ground_truth)
    with gc_paused():
        return _evaluate(ann_file, data, detections, iou_type)


def _evaluate(ann_file: Path, ground_truth: Path | dict, detections: list[dict], iou_type: str) -> EvalResult:
    gt = COCO(load_ground_truth(ground_truth), print_function=_quiet)
    check_detection_ids(ann_file, gt, detections)
    dt = _box_results(ann_file, gt, detections) if iou_type == "bbox" else gt.loadRes([dict(d) for d in detections])
    dt.print_function = _quiet
    coco_eval = COCOeval_faster(gt, dt, iou_type, print_function=_quiet)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()

    stats = {name: float(value) for name, value in zip(STAT_NAMES, coco_eval.stats)}
    # precision: [T iou, R recall, K category, A area, M maxDets]; area 'all', maxDets 100.
    precision = np.asarray(coco_eval.eval["precision"])[:, :, :, 0, -1]
    names = {cat["id"]: cat["name"] for cat in gt.loadCats(gt.getCatIds())}
    per_category = []
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        per_category.append((str(names[cat_id]), float(values.mean()) if values.size else math.nan))
    return EvalResult(stats=stats, per_category=per_category, num_images=len(gt.getImgIds()),
                      precision=np.asarray(coco_eval.eval["precision"]))


def format_results(result: EvalResult) -> str:
    """The 12 stats in COCOeval.summarize() layout, then an aligned per-category AP table; both
    as fractions (0..1), as metrics.json holds them."""
    lines = []
    for name, (is_ap, iou, area, max_dets) in zip(STAT_NAMES, _STAT_ROWS):
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] "
            f"= {result.stats[name]:0.3f}"
        )
    if result.per_category:
        lines += ["", f"Per-category AP @[ IoU=0.50:0.95 ] over {result.num_images} images:"]
        lines += category_table(result.per_category)
    return "\n".join(lines)


def category_table(per_category: list[tuple[str, float]], pairs_per_row: int = 3) -> list[str]:
    """(name, AP) pairs laid out several to a row so 80 classes stay readable; '-': no ground truth."""
    cells = [(name, "-" if math.isnan(ap) else f"{ap:.3f}") for name, ap in per_category]
    name_w = max(len("category"), *(len(n) for n, _ in cells))
    ap_w = max(len("AP"), *(len(a) for _, a in cells))
    columns = min(pairs_per_row, len(cells))

    def row(pairs: list[tuple[str, str]]) -> str:
        return " | ".join(f"{n:<{name_w}} {a:>{ap_w}}" for n, a in pairs).rstrip()

    header = row([("category", "AP")] * columns)
    rows = [row(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    return [header, "-" * len(header), *rows]


def write_metrics(path: str | Path, result: EvalResult, extra: dict[str, object] | None = None) -> None:
    """Writes the stats (COCO's 12, or an RPN's recall) plus per_class {name: AP} as JSON,
    atomically, all fractions in 0..1; `extra` adds sections beside them (e.g. "voc").

    NaN (category without GT) becomes null, since NaN is not valid JSON.
    """
    payload: dict[str, object] = {name: float(value) for name, value in result.stats.items()}
    payload["per_class"] = {name: (None if math.isnan(ap) else ap) for name, ap in result.per_category}
    payload.update(extra or {})
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
