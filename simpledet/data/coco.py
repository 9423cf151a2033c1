"""COCO-format detection dataset: validated annotations, clipped boxes, mirrored copies, and
instance masks when asked (polygons and RLE, rasterised with pycocotools when a sample is read).

No randomness here: flipping is done SimpleDet-style by appending mirrored copies,
so the same index always yields the same sample.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from simpledet.errors import UserError

log = logging.getLogger(__name__)

_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _is_size(v: Any) -> bool:
    return _is_num(v) and v > 0


def _is_box(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_num(x) for x in v)


# Required keys per section: (key, check, what the value must be); `data check` applies them too.
COCO_SCHEMA: dict[str, tuple[tuple[str, Callable[[Any], bool], str], ...]] = {
    "images": (("id", _is_int, "an integer"), ("file_name", _is_name, "a non-empty string"),
               ("width", _is_size, "a positive number"), ("height", _is_size, "a positive number")),
    "annotations": (("id", _is_int, "an integer"), ("image_id", _is_int, "an integer"),
                    ("category_id", _is_int, "an integer"), ("bbox", _is_box, "4 numbers")),
    "categories": (("id", _is_int, "an integer"), ("name", _is_name, "a non-empty string")),
}


def _segmentation_problem(segm: Any, height: int, width: int) -> str | None:
    """Why a COCO segmentation (polygons, or RLE with list or string counts) is unusable, or None."""
    if isinstance(segm, list):
        for part in segm:
            if not isinstance(part, list) or not all(_is_num(x) for x in part) or len(part) % 2:
                return f"polygons must be lists of x, y numbers, got {short_repr(part)}"
        return None
    if isinstance(segm, dict):
        counts, size = segm.get("counts"), segm.get("size")
        if not (isinstance(counts, str) or (isinstance(counts, list) and all(_is_int(c) for c in counts))):
            return f"RLE counts must be a string or a list of integers, got {short_repr(counts)}"
        if size != [height, width]:
            return f"RLE size {short_repr(size)} is not the image's [height, width] [{height}, {width}]"
        return None
    return f"must be a list of polygons or an RLE object, got {short_repr(segm)}"


def _to_rle(segm: list | dict, height: int, width: int) -> dict:
    """One compressed RLE per instance: polygon parts merged, uncompressed counts encoded."""
    if isinstance(segm, list):
        parts = [p for p in segm if len(p) >= 6]  # fewer than 3 points enclose nothing
        if not parts:
            return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
        return mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm


def short_repr(v: Any) -> str:
    """A value as a message quotes it: its repr, cut at 80 characters."""
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def record_where(section: str, i: int, rec: Any) -> str:
    """Where a record sits, for messages: `annotations[3] (id 17)`."""
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{section}[{i}]" + (f" (id {short_repr(rid)})" if rid is not None else "")


def load_coco_json(path: Path, image_files: bool = True) -> dict[str, list[dict]]:
    """Parse and check a COCO annotation file; every problem is a UserError naming the record.
    image_files: the images' records must say where and how large each image is (file_name,
    width, height), as training and inference read them; scoring detections needs only their ids."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path}: annotation file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read annotation file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a JSON text file (invalid UTF-8)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}, "
                        f"column {e.colno}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a JSON object with 'images', 'annotations' "
                        f"and 'categories', got {type(data).__name__}")
    data.setdefault("annotations", [])  # image-info-only files (test sets) have none
    for section, schema in COCO_SCHEMA.items():
        if section not in data:
            raise UserError(f"{path}: missing top-level key '{section}'")
        records = data[section]
        if not isinstance(records, list):
            raise UserError(f"{path}: '{section}' must be a list, got {type(records).__name__}")
        if section == "images" and not image_files:
            schema = schema[:1]  # the id alone
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise UserError(f"{path}: {section}[{i}] must be an object, "
                                f"got {type(rec).__name__}")
            for key, ok, what in schema:
                if key not in rec:
                    raise UserError(f"{path}: {record_where(section, i, rec)}: "
                                    f"missing required key '{key}'")
                if not ok(rec[key]):
                    raise UserError(f"{path}: {record_where(section, i, rec)}: {key} must be {what}, "
                                    f"got {short_repr(rec[key])}")
    if not data["categories"]:
        raise UserError(f"{path}: 'categories' is empty; at least one category is needed")
    image_ids = _unique_ids(path, "images", data["images"])
    category_ids = _unique_ids(path, "categories", data["categories"])
    for i, ann in enumerate(data["annotations"]):
        if ann["image_id"] not in image_ids:
            raise UserError(f"{path}: {record_where('annotations', i, ann)}: image_id "
                            f"{ann['image_id']} does not match any image")
        if ann["category_id"] not in category_ids:
            raise UserError(f"{path}: {record_where('annotations', i, ann)}: category_id "
                            f"{ann['category_id']} does not match any category")
    return data


def _unique_ids(path: Path, section: str, records: list[dict]) -> dict[int, int]:
    """id -> position; a repeated id is an error."""
    seen: dict[int, int] = {}
    for i, rec in enumerate(records):
        if rec["id"] in seen:
            raise UserError(f"{path}: {section}[{i}] (id {rec['id']}): duplicate id "
                            f"(also {section}[{seen[rec['id']]}])")
        seen[rec["id"]] = i
    return seen


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode; 16/32-bit grey is scaled down rather than clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    return img.convert("RGB")


class CocoDetection(torch.utils.data.Dataset):
    """Images and x1y1x2y2 boxes with contiguous labels 1..K (0 is background).

    with_masks: targets also hold `masks`, (N, H, W) uint8 in the image's pixels, one per box
    (crowd and dropped boxes drop theirs), mirrored with the flipped copies.
    with_ignore_regions: targets also hold `ignore_boxes`, (R, 4) x1y1x2y2: the image's crowd
    boxes (CrowdHuman's ignore regions), clipped and flipped as the boxes are, for an RPN that
    keeps its negatives out of them (RPNConfig.ignore_iof)."""

    def __init__(self, ann_file: str | Path, image_dir: str | Path, *,
                 train: bool = False, flip_copies: bool = False, with_masks: bool = False,
                 with_ignore_regions: bool = False, data: dict[str, list[dict]] | None = None) -> None:
        """data: the COCO-format records when they were read from another format (VOC, YOLO);
        ann_file then names that source in messages. Kept as `ground_truth` for evaluation."""
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.train = train
        self.flip_copies = flip_copies
        self.with_masks = with_masks
        self.with_ignore_regions = with_ignore_regions
        if data is None:
            data = load_coco_json(self.ann_file)
        self.ground_truth = data
        if not self.image_dir.is_dir():
            raise UserError(f"{self.image_dir}: image directory not found "
                            f"(images of {self.ann_file})")

        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids: list[int] = [c["id"] for c in cats]
        self.category_names: list[str] = [c["name"] for c in cats]
        self.category_id_to_label: dict[int, int] = {
            cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.label_to_category_id: dict[int, int] = {
            v: k for k, v in self.category_id_to_label.items()}

        self.stats: dict[str, int] = {"boxes_clipped": 0, "boxes_dropped": 0, "crowd_boxes": 0,
                                      "size_mismatch": 0}
        images_by_id = {im["id"]: im for im in data["images"]}
        per_image: dict[int, list[tuple[list[float], int, Any]]] = {i: [] for i in images_by_id}
        ignored: dict[int, list[list[float]]] = {i: [] for i in images_by_id}
        dropped: list[str] = []  # where the first dropped boxes are, for the warning
        for i, ann in enumerate(data["annotations"]):
            img = images_by_id[ann["image_id"]]
            box = self._clean_box(ann, img["width"], img["height"])
            if box is None and not ann.get("iscrowd", 0) and len(dropped) < 3:
                dropped.append(f"{record_where('annotations', i, ann)} bbox {short_repr(ann['bbox'])}")
            if box is not None:
                label = self.category_id_to_label[ann["category_id"]]
                segm = self._check_segmentation(i, ann, img) if with_masks else None
                per_image[ann["image_id"]].append((box, label, segm))
            elif ann.get("iscrowd", 0) and with_ignore_regions:
                region = _clip_box(ann["bbox"], img["width"], img["height"])
                if region is not None:
                    ignored[ann["image_id"]].append(region)
        if any(self.stats[k] for k in ("boxes_clipped", "boxes_dropped", "crowd_boxes")):
            log.warning("%s: %d boxes clipped to the image, %d dropped (empty after clipping "
                        "or non-positive size%s), %d crowd boxes ignored", self.ann_file,
                        self.stats["boxes_clipped"], self.stats["boxes_dropped"],
                        (": " + "; ".join(dropped) + ("; ..." if self.stats["boxes_dropped"] > len(dropped) else ""))
                        if dropped else "", self.stats["crowd_boxes"])

        self._records: list[dict[str, Any]] = []
        self._boxes: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._segms: list[list[Any]] = []  # raw COCO segmentations, rasterised when read
        self._ignore_boxes: list[Tensor] = []
        for im in data["images"]:
            objs = per_image[im["id"]]
            if train and not objs:
                continue  # nothing to learn from; evaluation keeps these
            self._records.append({k: im[k] for k in ("id", "file_name", "width", "height")})
            boxes = torch.tensor([b for b, _, _ in objs], dtype=torch.float32)
            self._boxes.append(boxes.reshape(-1, 4))
            self._labels.append(torch.tensor([lab for _, lab, _ in objs], dtype=torch.int64))
            self._segms.append([segm for _, _, segm in objs] if with_masks else [])
            if with_ignore_regions:
                self._ignore_boxes.append(torch.tensor(ignored[im["id"]], dtype=torch.float32).reshape(-1, 4))
        if train and not self._records:
            raise UserError(f"{self.ann_file}: no image has a usable (non-crowd, non-empty) box; "
                            "nothing to train on")
        ratios = [r["width"] / r["height"] for r in self._records]
        self.aspect_ratios: list[float] = ratios * 2 if flip_copies else ratios
        self._warned: set[tuple[int, str]] = set()

    def _clean_box(self, ann: dict, width: float, height: float) -> list[float] | None:
        """x1y1x2y2 clipped to the image, or None (crowd or empty); updates stats."""
        if ann.get("iscrowd", 0):
            self.stats["crowd_boxes"] += 1
            return None
        box = _clip_box(ann["bbox"], width, height)
        x, y, w, h = (float(v) for v in ann["bbox"])
        if box is None:
            self.stats["boxes_dropped"] += 1
        elif box != [x, y, x + w, y + h]:
            self.stats["boxes_clipped"] += 1
        return box

    def _check_segmentation(self, i: int, ann: dict, img: dict) -> list | dict:
        if "segmentation" not in ann:
            raise UserError(f"{self.ann_file}: {record_where('annotations', i, ann)}: missing 'segmentation' "
                            "(instance masks are needed for this model)")
        problem = _segmentation_problem(ann["segmentation"], int(img["height"]), int(img["width"]))
        if problem:
            raise UserError(f"{self.ann_file}: {record_where('annotations', i, ann)}: segmentation {problem}")
        return ann["segmentation"]

    def _masks(self, base: int, height: int, width: int) -> Tensor:
        """(N, height, width) uint8 instance masks of a record, in the order of its boxes."""
        rec = self._records[base]
        segms = self._segms[base]
        if not segms:
            return torch.zeros((0, height, width), dtype=torch.uint8)
        h, w = int(rec["height"]), int(rec["width"])
        decoded = mask_utils.decode([_to_rle(s, h, w) for s in segms])  # (h, w, N)
        masks = torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)))
        if (h, w) != (height, width):  # the image is not the size its record says: follow the image
            masks = torch.nn.functional.interpolate(masks[None], size=(height, width), mode="nearest")[0]
        return masks

    def __len__(self) -> int:
        return len(self._records) * (2 if self.flip_copies else 1)

    def image_info(self, index: int) -> dict[str, Any]:
        """image_id, file_name, width, height of the record behind a dataset index."""
        r = self._records[index % len(self._records)]
        return {"image_id": r["id"], "file_name": r["file_name"],
                "width": r["width"], "height": r["height"]}

    def _warn_once(self, base: int, stat: str, message: str, *args: Any) -> None:
        # One warning per file and per problem, however many epochs touch it.
        if (base, stat) not in self._warned:
            self._warned.add((base, stat))
            self.stats[stat] += 1
            log.warning(message, *args)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of size {len(self)}")
        base = index % len(self._records)
        flipped = index >= len(self._records)
        rec = self._records[base]
        path = self.image_dir / rec["file_name"]
        try:
            with Image.open(path) as img:
                img.load()
                rgb = _to_rgb(img)
        except _READ_ERRORS as exc:  # missing, undecodable, truncated: the run stops, named
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UserError(f"{path}: cannot read image ({reason}); it is an image of {self.ann_file}") from None
        image = F.to_dtype(F.pil_to_tensor(rgb), torch.float32, scale=True)
        height, width = image.shape[-2:]
        boxes = self._boxes[base]
        # the crowd boxes, only where asked for: no work on every image of every other dataset
        ignore_boxes = self._ignore_boxes[base] if self.with_ignore_regions else None
        if (width, height) != (rec["width"], rec["height"]):
            self._warn_once(base, "size_mismatch",
                            "%s: image is %dx%d but the annotation file says %sx%s; "
                            "rescaling its boxes", path, width, height, rec["width"], rec["height"])
            scale = torch.tensor([width / rec["width"], height / rec["height"]] * 2)
            boxes = boxes * scale
            ignore_boxes = ignore_boxes * scale if ignore_boxes is not None else None
        masks = self._masks(base, int(height), int(width)) if self.with_masks else None
        if flipped:
            image = F.horizontal_flip(image)
            boxes = F.horizontal_flip(tv_tensors.BoundingBoxes(
                boxes, format="XYXY", canvas_size=(height, width)))
            masks = masks.flip(-1) if masks is not None else None
            if ignore_boxes is not None:
                ignore_boxes = F.horizontal_flip(tv_tensors.BoundingBoxes(
                    ignore_boxes, format="XYXY", canvas_size=(height, width)))
        target = {
            "boxes": boxes.as_subclass(Tensor).clone(),
            "labels": self._labels[base].clone(),
            "image_id": rec["id"],
            "orig_size": (int(height), int(width)),
        }
        if masks is not None:
            target["masks"] = masks
        if ignore_boxes is not None:
            target["ignore_boxes"] = ignore_boxes.as_subclass(Tensor).clone()
        return image, target


def _clip_box(bbox: list[float], width: float, height: float) -> list[float] | None:
    """A COCO [x, y, w, h] as x1y1x2y2 clipped to the image, or None where nothing is left."""
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    return [x1, y1, x2, y2]


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Lists of images and targets."""
    return [b[0] for b in batch], [b[1] for b in batch]
