"""Pascal VOC layout: ROOT/JPEGImages/ID.jpg, ROOT/Annotations/ID.xml, ROOT/ImageSets/Main/SPLIT.txt.

Read into COCO records (`read_voc`) and written from them (`write_voc`).

- Boxes: VOC's corners are 1-based pixel indices, inclusive, so (xmin=1, xmax=W) spans the whole
  image; in continuous pixel coordinates that is x1 = xmin - 1, x2 = xmax (detectron2's rule;
  y alike). The writer does the inverse on boxes rounded to whole pixels.
- `difficult` objects become COCO ignore regions (iscrowd=1): kept out of the training targets
  and ignored by COCO evaluation, as VOC's own evaluation ignores them.
- Category ids are 1..K over the class names found in every XML under Annotations/, so that all
  splits of a root agree: the 20 VOC classes in VOC's order when every name is one of them (a
  split or a subset that lacks a class keeps VOC's ids), otherwise the names sorted.
- The image is JPEGImages/ID plus the extension of the XML's <filename> (.jpg when it has none);
  its size is the XML's <size>, or the image header's when <size> is missing or zero.

The XML files are parsed with the standard library's ElementTree: they are local files the user
owns, and expat does not fetch external entities.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from simpledet.data.records import (
    IMAGE_READ_ERRORS,
    DatasetRecords,
    Problems,
    image_header_size,
    read_error_reason,
)
from simpledet.errors import UserError
from simpledet.files import atomic_write, atomic_write_bytes, atomic_write_text

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def voc_image_dir(root: str | Path) -> Path:
    return Path(root) / "JPEGImages"


def read_voc(root: str | Path, split: str, problems: Problems | None = None) -> DatasetRecords:
    """The split's images and objects as COCO records; file_names are relative to JPEGImages/."""
    root = Path(root)
    problems = problems or Problems()
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    ann_dir, image_dir = root / "Annotations", voc_image_dir(root)
    if not root.is_dir():
        raise UserError(f"{root}: VOC root folder not found")
    for folder in (ann_dir, image_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: folder not found (a VOC root holds JPEGImages/, Annotations/ and "
                            "ImageSets/Main/SPLIT.txt)")
    stems = _read_split_file(split_file, root)

    wanted = {stem for stem, _ in stems}
    trees: dict[str, ET.Element] = {}  # the split's
    unreadable: set[str] = set()
    names: set[str] = set()
    for xml_path in sorted(ann_dir.glob("*.xml")):
        element = _parse(xml_path, problems)
        if element is None:
            unreadable.add(xml_path.stem)
            continue
        names.update(n for n in (o.findtext("name", "").strip() for o in element.findall("object")) if n)
        if xml_path.stem in wanted:
            trees[xml_path.stem] = element
    classes = list(VOC_CLASSES) if names <= set(VOC_CLASSES) else sorted(names)
    category_id = {name: k + 1 for k, name in enumerate(classes)}

    records = DatasetRecords(coco={"images": [], "annotations": [],
                                   "categories": [{"id": i, "name": n} for n, i in category_id.items()]},
                             image_dir=image_dir, source=root)
    images, annotations = records.coco["images"], records.coco["annotations"]
    first_line: dict[str, int] = {}
    for stem, line in stems:
        if stem in first_line:  # read once: evaluation would count its objects twice
            problems.warn(f"{split_file}:{line}", f"{stem} is listed again (first on line {first_line[stem]}); "
                          "it is read once")
            continue
        first_line[stem] = line
        xml_path = ann_dir / f"{stem}.xml"
        element = trees.get(stem)
        if element is None:
            if stem not in unreadable:  # an unreadable one is reported already
                problems.error(f"{split_file}:{line}", f"{stem}: annotation file {xml_path} not found")
            continue
        suffix = Path(element.findtext("filename", "").strip()).suffix or ".jpg"
        file_name = stem + suffix
        size = _size(xml_path, element, image_dir / file_name, problems)
        if size is None:
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        records.image_where[image_id] = str(xml_path)
        for n, obj in enumerate(element.findall("object"), 1):
            where = f"{xml_path}: object {n}"
            parsed = _object(where, obj, problems)
            if parsed is None:
                continue
            name, (x1, y1, x2, y2), difficult = parsed
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id[name],
                                "bbox": [x1, y1, w, h], "area": max(w, 0.0) * max(h, 0.0), "iscrowd": difficult})
            records.annotation_where[len(annotations)] = f"{where} ({name})"
    return records


def _read_split_file(split_file: Path, root: Path) -> list[tuple[str, int]]:
    """(image id, line number) per line: the first word, as VOC's per-class lists add a column."""
    try:
        text = split_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        found = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise UserError(f"{split_file}: split file not found (splits in {root}: "
                        f"{', '.join(found) or 'none'})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{split_file}: cannot read split file ({read_error_reason(e)})") from None
    return [(line.split()[0], n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _parse(xml_path: Path, problems: Problems) -> ET.Element | None:
    try:
        element = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        problems.error(f"{xml_path}:{e.position[0]}", f"malformed XML ({e})")
        return None
    except OSError as e:
        problems.error(xml_path, f"cannot read annotation file ({read_error_reason(e)})")
        return None
    if element.tag != "annotation":
        problems.error(xml_path, f"not a VOC annotation: the top element is <{element.tag}>, not <annotation>")
        return None
    return element


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _size(xml_path: Path, element: ET.Element, image: Path, problems: Problems) -> tuple[int, int] | None:
    """(width, height): the XML's <size>, else the image header's."""
    size = element.find("size")
    if size is not None:
        values = [size.findtext(tag, "").strip() for tag in ("width", "height")]
        numbers = [_number(v) for v in values]
        if any(v is None or v < 0 for v in numbers):
            problems.error(xml_path, f"<size> must hold non-negative numbers, got width {values[0]!r}, "
                           f"height {values[1]!r}")
            return None
        if all(numbers):  # some tools write 0 when they did not know: the header says
            return int(numbers[0]), int(numbers[1])
    try:
        return image_header_size(image)
    except IMAGE_READ_ERRORS as e:
        problems.error(xml_path, f"no <size>, and the image {image} cannot be read ({read_error_reason(e)})")
        return None


def _object(where: str, obj: ET.Element, problems: Problems) -> tuple[str, tuple[float, ...], int] | None:
    """(name, x1y1x2y2 in continuous pixels, difficult 0/1) of one <object>, or None after an error."""
    name = obj.findtext("name", "").strip()
    if not name:
        problems.error(where, "no <name>")
        return None
    box = obj.find("bndbox")
    if box is None:
        problems.error(f"{where} ({name})", "no <bndbox>")
        return None
    corners = []
    for tag in _CORNERS:
        text = box.findtext(tag)
        value = _number(text)
        if value is None:
            problems.error(f"{where} ({name})", f"<bndbox><{tag}> must be a number, got "
                           f"{'nothing' if text is None else repr(text)}")
            return None
        corners.append(value)
    difficult = obj.findtext("difficult", "0").strip() or "0"
    if difficult not in ("0", "1"):
        problems.error(f"{where} ({name})", f"<difficult> must be 0 or 1, got {difficult!r}")
        return None
    xmin, ymin, xmax, ymax = corners
    return name, (xmin - 1.0, ymin - 1.0, xmax, ymax), int(difficult)


def write_voc(coco: dict, image_dir: str | Path, root: str | Path, split: str, id_prefix: str = "") -> list[str]:
    """Writes COCO records (images under image_dir) as a VOC split under root: the images copied
    to JPEGImages/ under their own extension, one XML each, and ImageSets/Main/SPLIT.txt last.
    The VOC id of an image is id_prefix + its file name's stem. Boxes are rounded to whole pixels
    (the 1-based corners VOC stores), crowd regions become difficult objects. Returns the ids."""
    root, image_dir = Path(root), Path(image_dir)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    objects = defaultdict(list)
    for ann in coco.get("annotations", []):
        objects[ann["image_id"]].append(ann)
    ids: list[str] = []
    taken: set[str] = set()
    for img in coco["images"]:
        source = image_dir / img["file_name"]
        stem = id_prefix + Path(img["file_name"]).stem
        if stem in taken:
            raise UserError(f"{source}: another image already has the VOC id {stem}")
        taken.add(stem)
        ids.append(stem)
        file_name = stem + (Path(img["file_name"]).suffix or ".jpg")
        try:
            atomic_write_bytes(voc_image_dir(root) / file_name, source.read_bytes())
        except OSError as e:
            raise UserError(f"{source}: cannot read image ({read_error_reason(e)})") from None
        boxes = [(names[a["category_id"]], a["bbox"], a.get("iscrowd", 0)) for a in objects[img["id"]]]
        xml = _annotation_element(file_name, img["width"], img["height"], boxes)
        atomic_write(root / "Annotations" / f"{stem}.xml",
                     lambda f, xml=xml: ET.ElementTree(xml).write(f, encoding="utf-8"))
    atomic_write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    return ids


def _annotation_element(file_name: str, width: float, height: float,
                        objects: list[tuple[str, list[float], int]]) -> ET.Element:
    def child(parent: ET.Element, tag: str, text: object) -> None:
        ET.SubElement(parent, tag).text = str(text)

    ann = ET.Element("annotation")
    child(ann, "folder", "JPEGImages")
    child(ann, "filename", file_name)
    size = ET.SubElement(ann, "size")
    for tag, value in (("width", round(width)), ("height", round(height)), ("depth", 3)):
        child(size, tag, value)
    child(ann, "segmented", 0)
    for name, (x, y, w, h), crowd in objects:
        obj = ET.SubElement(ann, "object")
        for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", 0), ("difficult", int(bool(crowd)))):
            child(obj, tag, value)
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(_CORNERS, (round(x) + 1, round(y) + 1, round(x + w), round(y + h))):
            child(box, tag, value)
    ET.indent(ann)
    return ann
