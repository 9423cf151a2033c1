"""CrowdHuman's .odgt annotations: one JSON object per line, one line per image.

Read into COCO records (`read_crowdhuman`), as SimpleDet's utils/create_crowdhuman_roidb.py
reads them:

- A line is {"ID": ..., "gtboxes": [...]}; the image is IMAGE_DIR/ID.jpg (the config's
  `image_dir`, CrowdHuman's Images/ folder). One .odgt file is one split (annotation_train.odgt,
  annotation_val.odgt), so `split` is not used. Its size is the line's "width" and "height"
  when it has them (CrowdDet's files do), otherwise the image header's.
- Each of gtboxes is a person: its full-body box `fbox` [x, y, w, h] in pixels is the object
  (`vbox`, the visible part, and `hbox`, the head, are not used). One category, person (id 1).
- Ignore regions, COCO crowd boxes (iscrowd=1): boxes whose tag is not "person" (CrowdHuman's
  "mask" regions: crowds, reflections, posters) and persons with extra.ignore set. Training
  keeps them out of the targets, the RPN ignores the anchors they cover, and evaluation
  (engine/crowdhuman_metrics.py) lets a detection that falls in one go uncounted.
- Boxes of zero width or height are skipped, as SimpleDet skips them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from simpledet.data.records import (
    IMAGE_READ_ERRORS,
    DatasetRecords,
    Problems,
    image_header_size,
    read_error_reason,
)
from simpledet.errors import UserError

CATEGORIES = [{"id": 1, "name": "person"}]


def read_crowdhuman(ann_file: str | Path, image_dir: str | Path, problems: Problems | None = None) -> DatasetRecords:
    """The .odgt file's images and boxes as COCO records; file_names (ID.jpg) are relative to image_dir."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    problems = problems or Problems()
    try:
        text = ann_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{ann_file}: cannot read CrowdHuman annotation file ({read_error_reason(e)})") from None
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: image folder not found (the images of {ann_file})")
    records = DatasetRecords(coco={"images": [], "annotations": [], "categories": [dict(c) for c in CATEGORIES]},
                             image_dir=image_dir, source=ann_file)
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{ann_file}:{number}"
        parsed = _parse_line(where, line, image_dir, problems)
        if parsed is None:
            continue
        name, size, boxes = parsed
        if name in first_line:  # read once: evaluation would count its persons twice
            problems.warn(where, f"image {name!r} is listed again (first on line {first_line[name]}); it is read once")
            continue
        first_line[name] = number
        _add_image(records, where, name, size, boxes)
    return records


def _add_image(records: DatasetRecords, where: str, name: str, size: tuple[int, int],
               boxes: list[tuple[list[float], int]]) -> None:
    images, annotations = records.coco["images"], records.coco["annotations"]
    image_id = len(images) + 1
    images.append({"id": image_id, "file_name": f"{name}.jpg", "width": size[0], "height": size[1]})
    records.image_where[image_id] = where
    for n, ((x, y, w, h), ignore) in enumerate(boxes, 1):
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                            "bbox": [x, y, w, h], "area": w * h, "iscrowd": ignore})
        records.annotation_where[len(annotations)] = f"{where}: gtboxes[{n - 1}]"


def _parse_line(where: str, line: str, image_dir: Path,
                problems: Problems) -> tuple[str, tuple[int, int], list[tuple[list[float], int]]] | None:
    """(ID, (width, height), [(fbox, ignore 0/1)]) of one line, or None after an error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        problems.error(where, f"not valid JSON: {e.msg} at column {e.colno}")
        return None
    if not isinstance(record, dict):
        problems.error(where, f"expected a JSON object with 'ID' and 'gtboxes', got {type(record).__name__}")
        return None
    name = record.get("ID")
    if not isinstance(name, str) or not name:
        problems.error(where, f"'ID' must be a non-empty string (the image's file name without .jpg), got {name!r}")
        return None
    gtboxes = record.get("gtboxes", [])
    if not isinstance(gtboxes, list):
        problems.error(where, f"{name}: 'gtboxes' must be a list, got {type(gtboxes).__name__}")
        return None
    boxes = []
    for n, entry in enumerate(gtboxes):
        box = _parse_box(f"{where}: {name}: gtboxes[{n}]", entry, problems)
        if box is None:
            return None
        if box[0][2] > 0 and box[0][3] > 0:
            boxes.append(box)
    size = _size(where, name, record, image_dir, problems)
    return None if size is None else (name, size, boxes)


def _parse_box(where: str, entry: object, problems: Problems) -> tuple[list[float], int] | None:
    if not isinstance(entry, dict):
        problems.error(where, f"expected an object with 'tag' and 'fbox', got {type(entry).__name__}")
        return None
    tag = entry.get("tag")
    if not isinstance(tag, str):
        problems.error(where, f"'tag' must be a string ('person' or 'mask'), got {tag!r}")
        return None
    fbox = entry.get("fbox")
    if (not isinstance(fbox, list) or len(fbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in fbox)):
        problems.error(where, f"'fbox' must be 4 numbers [x, y, w, h], got {fbox!r}")
        return None
    extra = entry.get("extra", {})
    if not isinstance(extra, dict):
        problems.error(where, f"'extra' must be an object, got {type(extra).__name__}")
        return None
    ignore = tag != "person" or bool(extra.get("ignore", 0))
    return [float(v) for v in fbox], int(ignore)


def _size(where: str, name: str, record: dict, image_dir: Path, problems: Problems) -> tuple[int, int] | None:
    """(width, height): the line's own, else the image header's."""
    width, height = record.get("width"), record.get("height")
    if width is not None or height is not None:
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            problems.error(where, f"{name}: 'width' and 'height' must be positive integers, got {width!r}, {height!r}")
            return None
        return width, height
    image = image_dir / f"{name}.jpg"
    try:
        return image_header_size(image)
    except IMAGE_READ_ERRORS as e:
        problems.error(where, f"{name}: cannot read the image {image} ({read_error_reason(e)})")
        return None
