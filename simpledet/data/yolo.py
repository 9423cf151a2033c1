"""YOLO layout (ultralytics'): a data.yaml and one label file per image.

Read into COCO records (`read_yolo`) and written from them (`write_yolo`, `write_data_yaml`).

- data.yaml: `path` (the dataset folder; relative to the data.yaml's folder, which it defaults
  to), a key per split (`train`, `val`, `test`) naming image folders or list files relative to
  `path` (one or a list of them), and `names` (a list, or an index: name map numbering 0..K-1;
  `nc`, when present, must be K). Category ids are 1..K in the order of `names`.
- A folder contributes every image below it; a list file one image per line, relative lines
  taken from the list file's folder. A split given as one folder has its file_names relative to
  that folder; otherwise they are relative to `path`, which is then the image folder.
- Labels: ultralytics' rule finds an image's label file (the last /images/ in its path becomes
  /labels/, its extension .txt). Each line is `class cx cy w h`, normalised to the image's size
  (read from its header), or `class x1 y1 x2 y2 ...`, a polygon, of which the box is kept. An
  image without a label file, or with an empty one, has no boxes: a background image, kept for
  evaluation and skipped in training.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from simpledet.data.records import (
    IMAGE_READ_ERRORS,
    DatasetRecords,
    Problems,
    image_header_size,
    read_error_reason,
)
from simpledet.errors import UserError
from simpledet.files import atomic_write_bytes, atomic_write_text

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def label_path(image: str | Path) -> Path:
    """ultralytics' rule: the last /images/ of the image's path becomes /labels/, the extension .txt."""
    text = str(image)
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images in text:
        head, tail = text.rsplit(images, 1)
        text = head + labels + tail
    return Path(text).with_suffix(".txt")


def read_yolo(data_yaml: str | Path, split: str, problems: Problems | None = None) -> DatasetRecords:
    """The split's images and boxes as COCO records (see the module doc for file_names)."""
    data_yaml = Path(data_yaml)
    problems = problems or Problems()
    spec = _load_yaml(data_yaml)
    names = _names(data_yaml, spec)
    root = _root(data_yaml, spec)
    listed, image_dir = _split_images(data_yaml, spec, root, split, problems)

    records = DatasetRecords(coco={"images": [], "annotations": [],
                                   "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]},
                             image_dir=image_dir, source=data_yaml)
    images, annotations = records.coco["images"], records.coco["annotations"]
    for image, where in listed:
        try:
            width, height = image_header_size(image)
        except IMAGE_READ_ERRORS as e:
            problems.error(where, f"cannot read image {image} ({read_error_reason(e)})")
            continue
        image_id = len(images) + 1
        file_name = image.relative_to(image_dir).as_posix() if image.is_relative_to(image_dir) else str(image)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        labels = label_path(image)
        records.image_where[image_id] = str(labels if labels.is_file() else image)
        for line_no, (cls, (cx, cy, w, h)) in _read_labels(labels, len(names), problems):
            bw, bh = w * width, h * height
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, bw, bh],
                                "area": max(bw, 0.0) * max(bh, 0.0), "iscrowd": 0})
            records.annotation_where[len(annotations)] = f"{labels}:{line_no}"
    return records


def _load_yaml(data_yaml: Path) -> dict[str, Any]:
    try:
        text = data_yaml.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{data_yaml}: dataset file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{data_yaml}: cannot read dataset file ({read_error_reason(e)})") from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{data_yaml}:{mark.line + 1}" if mark is not None else str(data_yaml)
        raise UserError(f"{where}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(spec, dict):
        raise UserError(f"{data_yaml}: expected a mapping with path, train, val and names, got {type(spec).__name__}")
    return spec


def _names(data_yaml: Path, spec: dict[str, Any]) -> list[str]:
    names = spec.get("names")
    if isinstance(names, dict):
        try:
            by_index = {int(k): v for k, v in names.items() if not isinstance(k, bool)}
        except (TypeError, ValueError):
            by_index = {}
        if sorted(by_index) != list(range(len(names))):
            raise UserError(f"{data_yaml}: names: the keys must number the classes 0..{len(names) - 1}, got "
                            f"{', '.join(map(str, names))}")
        names = [by_index[k] for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise UserError(f"{data_yaml}: names must list the class names (or map 0..K-1 to them), got {names!r}")
    for k, name in enumerate(names):
        # YAML reads yes/no/on/off as booleans and ~ as null: such a name needs quotes
        if isinstance(name, bool) or not isinstance(name, (str, int, float)) or str(name) == "":
            raise UserError(f"{data_yaml}: names[{k}] must be a class name, got {name!r} (quote it in the YAML)")
    if "nc" in spec and spec["nc"] != len(names):
        raise UserError(f"{data_yaml}: nc is {spec['nc']!r} but names has {len(names)} classes")
    return [str(n) for n in names]


def _root(data_yaml: Path, spec: dict[str, Any]) -> Path:
    path = spec.get("path")
    if path in (None, ""):
        return data_yaml.parent
    if not isinstance(path, str):
        raise UserError(f"{data_yaml}: path must be a folder name, got {path!r}")
    root = Path(os.path.normpath(data_yaml.parent / path))  # an absolute path stays as it is
    if not root.is_dir():
        raise UserError(f"{data_yaml}: path {path!r}: folder {root} not found")
    return root


def _split_images(data_yaml: Path, spec: dict[str, Any], root: Path, split: str,
                  problems: Problems) -> tuple[list[tuple[Path, str]], Path]:
    """(image path, where it was listed) for each image of the split, and the split's image folder."""
    entries = spec.get(split)
    if isinstance(entries, str):
        entries = [entries]
    if not entries or not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        known = [k for k, v in spec.items() if k not in ("path", "names", "nc") and isinstance(v, (str, list))]
        raise UserError(f"{data_yaml}: {split}: expected an image folder or list file (or a list of them), got "
                        f"{entries!r} (splits in this file: {', '.join(known) or 'none'})")
    listed: list[tuple[Path, str]] = []
    folders = []
    for entry in entries:
        place = Path(os.path.normpath(root / entry))
        if place.is_dir():
            folders.append(place)
            listed += [(p, str(p)) for p in sorted(place.rglob("*"))
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        elif place.is_file():
            listed += _list_file(place)
        else:
            raise UserError(f"{data_yaml}: {split}: {entry!r} is neither an image folder nor a list file "
                            f"({place} not found)")
    image_dir = folders[0] if len(entries) == 1 and folders else root
    images, first = [], {}
    for image, where in listed:
        if image in first:  # read once: evaluation would count its boxes twice
            problems.warn(where, f"{image} is listed again (first by {first[image]}); it is read once")
            continue
        first[image] = where
        images.append((image, where))
    return images, image_dir


def _list_file(list_file: Path) -> list[tuple[Path, str]]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{list_file}: cannot read image list ({read_error_reason(e)})") from None
    images = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            images.append((Path(os.path.normpath(list_file.parent / line.strip())), f"{list_file}:{n}"))
    return images


def _read_labels(labels: Path, num_classes: int, problems: Problems):
    """(line number, (class index, (cx, cy, w, h))) per usable line; none when the file is absent."""
    try:
        text = labels.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as e:
        problems.error(labels, f"cannot read label file ({read_error_reason(e)})")
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            parsed = _label_line(f"{labels}:{n}", line, num_classes, problems)
            if parsed is not None:
                yield n, parsed


def _label_line(where: str, line: str, num_classes: int,
                problems: Problems) -> tuple[int, tuple[float, float, float, float]] | None:
    words = line.split()
    try:
        values = [float(w) for w in words]
    except ValueError:
        problems.error(where, f"expected numbers (class cx cy w h), got {line.strip()!r}")
        return None
    if not all(math.isfinite(v) for v in values):
        problems.error(where, f"not a finite number in {line.strip()!r}")
        return None
    if len(values) == 5:
        box = (values[1], values[2], values[3], values[4])
    elif len(values) >= 7 and len(values) % 2 == 1:  # a polygon: its box
        xs, ys = values[1::2], values[2::2]
        box = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys))
    else:
        problems.error(where, f"expected 5 numbers (class cx cy w h), got {len(values)}: {line.strip()!r}")
        return None
    if not values[0].is_integer():
        problems.error(where, f"the class index must be an integer, got {words[0]!r}")
        return None
    cls = int(values[0])
    if not 0 <= cls < num_classes:
        problems.error(where, f"class index {cls} is outside names (0..{num_classes - 1})")
        return None
    return cls, box


def write_yolo(coco: dict, image_dir: str | Path, root: str | Path, split: str) -> None:
    """Writes COCO records (images under image_dir) as a YOLO split under root: the images copied to
    images/SPLIT/ under their file_names, a label file for each image with boxes (class index = the
    category's place among the categories sorted by id; 6 decimals). YOLO has no ignore regions:
    crowd annotations are left out, as ultralytics' COCO converter does."""
    root, image_dir = Path(root), Path(image_dir)
    index = {c["id"]: k for k, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    boxes = defaultdict(list)
    for ann in coco.get("annotations", []):
        if not ann.get("iscrowd", 0):
            boxes[ann["image_id"]].append(ann)
    for img in coco["images"]:
        source, target = image_dir / img["file_name"], root / "images" / split / img["file_name"]
        try:
            atomic_write_bytes(target, source.read_bytes())
        except OSError as e:
            raise UserError(f"{source}: cannot read image ({read_error_reason(e)})") from None
        width, height = img["width"], img["height"]
        lines = [f"{index[a['category_id']]} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} "
                 f"{w / width:.6f} {h / height:.6f}\n" for a in boxes[img["id"]] for x, y, w, h in [a["bbox"]]]
        if lines:
            atomic_write_text(label_path(target), "".join(lines))


def write_data_yaml(root: str | Path, splits: list[str], names: list[str]) -> Path:
    """root/data.yaml naming root (absolute, as ultralytics reads it), images/SPLIT for each split
    and the class names."""
    root = Path(root)
    spec = {"path": str(root.resolve()), **{s: f"images/{s}" for s in splits},
            "names": dict(enumerate(names))}
    atomic_write_text(root / "data.yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return root / "data.yaml"
