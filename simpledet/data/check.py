"""`simpledet data check`: what a dataset split holds, and everything wrong with it.

Loading for training stops at the first fatal problem; the check reads the same files in
collecting mode, so that one run lists every problem, each named by file and line or record:
malformed lines and files, unknown classes, duplicate ids and file names, missing or unreadable
images, images whose size differs from their record, boxes of zero area or outside the image.
It also counts boxes per class and by size, lists images without boxes, and draws a few images
with their ground truth.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from simpledet.config import DatasetConfig
from simpledet.data.coco import COCO_SCHEMA, record_where, short_repr
from simpledet.data.datasets import read_records
from simpledet.data.image_io import read_image
from simpledet.data.records import IMAGE_READ_ERRORS, DatasetRecords, Problem, Problems, read_error_reason
from simpledet.errors import UserError
from simpledet.visualize import draw_detections, save_image

# How far (px) a box may pass the image's edge before it counts as outside: the rounding of
# YOLO's 6-decimal normalised text, not a real overhang.
EDGE_TOLERANCE = 0.01
# COCO's area ranges (px²) and a few powers of two for sqrt(area) (px)
COCO_AREA_RANGES = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, math.inf))
SIDE_EDGES = (8, 16, 32, 64, 128, 256, 512)
_BAR = 40  # characters of the longest histogram bar
_LISTED = 10  # images without boxes named in the report


@dataclass
class CheckReport:
    name: str  # data.train, data.val or the dataset's path
    split: DatasetConfig
    records: DatasetRecords
    problems: list[Problem]
    flagged: set[int] = field(default_factory=set)  # images with a problem: drawn first


def check_split(split: DatasetConfig, *, name: str, full: bool = False) -> CheckReport:
    """Reads one split collecting its problems. A file that cannot be read at all (the annotation
    file, VOC's split file, the data.yaml or a folder they name) is a UserError.
    full: decode every image (finds truncated files), not only its header."""
    problems = Problems(collect=True)
    if split.format == "coco":
        records = read_coco_leniently(Path(split.ann_file), Path(split.image_dir), problems)
    else:
        records = read_records(split, key=name, problems=problems)
    flagged: set[int] = set()
    _check_images(records, problems, full, flagged)
    _check_boxes(records, problems, flagged)
    _check_duplicate_files(records, problems)
    return CheckReport(name, split, records, problems.found, flagged)


def read_coco_leniently(ann_file: Path, image_dir: Path, problems: Problems) -> DatasetRecords:
    """A COCO file's usable records, every broken one reported: the same rules as
    `coco.load_coco_json`, which stops at the first."""
    try:
        data = json.loads(ann_file.read_bytes())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{ann_file}: cannot read annotation file ({read_error_reason(e)})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{ann_file}:{e.lineno}: not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in ("images", "categories")):
        raise UserError(f"{ann_file}: expected a JSON object with 'images', 'annotations' and 'categories' lists")
    records = DatasetRecords(coco={}, image_dir=image_dir, source=ann_file)
    kept: dict[str, list[tuple[int, dict]]] = {}
    for section, schema in COCO_SCHEMA.items():
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise UserError(f"{ann_file}: '{section}' must be a list, got {type(entries).__name__}")
        seen: dict[int, int] = {}
        kept[section] = []
        for i, rec in enumerate(entries):
            where = f"{ann_file}: {record_where(section, i, rec)}"
            problem = _record_problem(rec, schema)
            if problem is None and rec["id"] in seen:
                problem = f"duplicate id (also {section}[{seen[rec['id']]}])"
            if problem is not None:
                problems.error(where, problem)
                continue
            seen[rec["id"]] = i
            kept[section].append((i, rec))
    if not kept["categories"]:
        problems.error(ann_file, "no usable category")
    image_ids = {rec["id"] for _, rec in kept["images"]}
    category_ids = {rec["id"] for _, rec in kept["categories"]}
    annotations = []
    for i, ann in kept["annotations"]:
        where = f"{ann_file}: {record_where('annotations', i, ann)}"
        if ann["image_id"] not in image_ids:
            problems.error(where, f"image_id {ann['image_id']} does not match any image")
        elif ann["category_id"] not in category_ids:
            problems.error(where, f"unknown class: category_id {ann['category_id']} does not match any category")
        else:
            annotations.append(ann)
            records.annotation_where[ann["id"]] = where
    for i, img in kept["images"]:
        records.image_where[img["id"]] = f"{ann_file}: {record_where('images', i, img)}"
    records.coco = {"images": [img for _, img in kept["images"]], "annotations": annotations,
                    "categories": [cat for _, cat in kept["categories"]]}
    return records


def _record_problem(rec: Any, schema) -> str | None:
    if not isinstance(rec, dict):
        return f"must be an object, got {type(rec).__name__}"
    for key, ok, what in schema:
        if key not in rec:
            return f"missing required key '{key}'"
        if not ok(rec[key]):
            return f"{key} must be {what}, got {short_repr(rec[key])}"
    return None


def _check_images(records: DatasetRecords, problems: Problems, full: bool, flagged: set[int]) -> None:
    if not records.image_dir.is_dir():
        problems.error(records.image_dir, f"image folder not found (images of {records.source})")
        flagged.update(img["id"] for img in records.coco["images"])
        return
    for img in records.coco["images"]:
        path = records.image_dir / img["file_name"]
        where = records.image_where.get(img["id"], str(records.source))
        try:
            with Image.open(path) as image:
                size = image.size
                if full:
                    image.load()
        except IMAGE_READ_ERRORS as e:
            what = "not found" if isinstance(e, FileNotFoundError) else f"cannot be read ({read_error_reason(e)})"
            problems.error(where, f"image {path} {what}")
            flagged.add(img["id"])
            continue
        if size != (img["width"], img["height"]):
            problems.error(where, f"image {path} is {size[0]}x{size[1]} but its record says "
                           f"{img['width']}x{img['height']}")
            flagged.add(img["id"])


def _check_boxes(records: DatasetRecords, problems: Problems, flagged: set[int]) -> None:
    sizes = {img["id"]: (img["width"], img["height"]) for img in records.coco["images"]}
    for ann in records.coco["annotations"]:
        x, y, w, h = (float(v) for v in ann["bbox"])
        width, height = sizes[ann["image_id"]]
        where = records.annotation_where.get(ann["id"], f"{records.source}: annotation {ann['id']}")
        box = f"box (x, y, w, h) = ({x:.6g}, {y:.6g}, {w:.6g}, {h:.6g})"
        if w <= 0 or h <= 0:
            problems.error(where, f"zero area: {box}")
        elif x >= width or y >= height or x + w <= 0 or y + h <= 0:
            problems.error(where, f"{box} lies entirely outside the {width}x{height} image")
        elif (x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + w > width + EDGE_TOLERANCE
              or y + h > height + EDGE_TOLERANCE):
            problems.error(where, f"{box} reaches outside the {width}x{height} image (training clips it)")
        else:
            continue
        flagged.add(ann["image_id"])


def _check_duplicate_files(records: DatasetRecords, problems: Problems) -> None:
    listed: dict[str, list[int]] = defaultdict(list)
    for img in records.coco["images"]:
        listed[img["file_name"]].append(img["id"])
    for file_name, ids in listed.items():
        if len(ids) > 1:
            wheres = sorted({records.image_where.get(i, str(records.source)) for i in ids})
            problems.error(records.image_dir / file_name, f"the same image is listed {len(ids)} times "
                           f"(by {'; '.join(wheres)})")


def format_report(report: CheckReport) -> str:
    """Counts per class, a box-size histogram, the images without boxes and every problem."""
    coco, split = report.records.coco, report.split
    described = f"{split.format} {split.ann_file}" + (f", split {split.split}" if split.split else "")
    lines = [("" if report.name == split.ann_file else f"{report.name}: ") + described
             + f" (images in {report.records.image_dir})"]
    boxes = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
    ignored = len(coco["annotations"]) - len(boxes)
    with_boxes = {a["image_id"] for a in boxes}
    empty = [img["file_name"] for img in coco["images"] if img["id"] not in with_boxes]
    lines.append(f"  {len(coco['images'])} images ({len(empty)} without boxes), {len(boxes)} boxes, "
                 f"{ignored} ignore regions (VOC difficult, COCO crowd)")

    per_class, images_per_class = Counter(a["category_id"] for a in boxes), defaultdict(set)
    ignored_per_class = Counter(a["category_id"] for a in coco["annotations"] if a.get("iscrowd", 0))
    for a in boxes:
        images_per_class[a["category_id"]].add(a["image_id"])
    width = max([len("class")] + [len(c["name"]) for c in coco["categories"]])
    lines.append(f"  {'id':>4}  {'class':<{width}}  {'boxes':>7}  {'images':>7}  {'ignored':>7}")
    for cat in sorted(coco["categories"], key=lambda c: c["id"]):
        cid = cat["id"]
        lines.append(f"  {cid:>4}  {cat['name']:<{width}}  {per_class[cid]:>7}  {len(images_per_class[cid]):>7}  "
                     f"{ignored_per_class[cid]:>7}")

    areas = [a["bbox"][2] * a["bbox"][3] for a in boxes if a["bbox"][2] > 0 and a["bbox"][3] > 0]
    lines.append("  box sizes, COCO's ranges of area (px²):")
    coco_rows = [(f"{name} [{lo:g}, {hi:g})", sum(lo <= a < hi for a in areas)) for name, lo, hi in COCO_AREA_RANGES]
    lines += _histogram(coco_rows)
    lines.append("  box sizes, sqrt(area) (px):")
    edges = (0, *SIDE_EDGES, math.inf)
    side_rows = [(f"[{lo:g}, {hi:g})", sum(lo <= math.sqrt(a) < hi for a in areas)) for lo, hi in zip(edges, edges[1:])]
    lines += _histogram(side_rows)

    if empty:
        more = f", ... ({len(empty) - _LISTED} more)" if len(empty) > _LISTED else ""
        lines.append(f"  images without boxes: {', '.join(empty[:_LISTED])}{more}")
    if report.problems:
        lines.append(f"  problems ({len(report.problems)}):")
        lines += [f"    {p}" for p in report.problems]
    else:
        lines.append("  no problems found")
    return "\n".join(lines)


def _histogram(rows: list[tuple[str, int]]) -> list[str]:
    top = max([count for _, count in rows] + [1])
    width = max(len(label) for label, _ in rows)
    bars = ["#" * math.ceil(_BAR * count / top) for _, count in rows]
    return [f"    {label:<{width}}  {count:>7}  {bar}".rstrip() for (label, count), bar in zip(rows, bars)]


def write_pictures(report: CheckReport, folder: Path, count: int) -> list[Path]:
    """Up to `count` images drawn with their ground truth (ignore regions captioned so), images
    with problems first; PNG files named after the images. Unreadable images are skipped."""
    records = report.records
    names = {c["id"]: c["name"] for c in records.coco["categories"]}
    per_image = defaultdict(list)
    for ann in records.coco["annotations"]:
        per_image[ann["image_id"]].append(ann)
    images = sorted(records.coco["images"], key=lambda img: img["id"] not in report.flagged)
    written: list[Path] = []
    for img in images:
        if len(written) >= count:
            break
        try:
            image = read_image(records.image_dir / img["file_name"])
        except UserError:
            continue
        height, width = image.shape[-2:]
        boxes, labels = [], []
        for ann in per_image[img["id"]]:
            x, y, w, h = ann["bbox"]
            x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
            x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
            if x2 > x1 and y2 > y1:
                boxes.append([x1, y1, x2, y2])
                labels.append(names[ann["category_id"]] + (" (ignored)" if ann.get("iscrowd", 0) else ""))
        drawn = draw_detections(image, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels)
        path = folder / (Path(img["file_name"].replace("/", "__")).stem + ".png")
        save_image(path, drawn)
        written.append(path)
    return written
