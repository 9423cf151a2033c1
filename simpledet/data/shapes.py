"""Deterministic synthetic detection dataset: coloured shapes on smooth backgrounds.

Small enough to train a detector on CPU in minutes; used by the demo and tests.
Each object is rasterised from its stored COCO polygon with Pillow, so the picture,
the polygon and the bbox (tight box of the rasterised mask) all agree.
"""

from __future__ import annotations

import json
import math
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from simpledet.data.voc import write_voc
from simpledet.data.yolo import write_data_yaml, write_yolo
from simpledet.files import atomic_write, atomic_write_text

CATEGORIES: list[str] = ["circle", "square", "triangle", "cross"]
MIN_SIZE, MAX_SIZE = 16, 56  # object extent in px for 128-px images
MAX_COVER = 0.4  # a new object's box may cover at most this fraction of an earlier box
MAX_HIDDEN = 0.15  # ... and hide at most this fraction of an earlier object's pixels
MIN_CONTRAST = 120  # min L1 RGB distance between an object and what it covers
MAX_LOW_CONTRAST = 0.05  # fraction of object pixels allowed below MIN_CONTRAST
NON_SQUARE_PROB = 0.15  # some 5:4 / 4:5 images so aspect grouping gets exercised
PLACEMENT_TRIES = 30


def _outline(kind: int, x0: float, y0: float, s: float) -> list[tuple[float, float]]:
    """Polygon of a shape whose bounding square is (x0, y0, x0 + s, y0 + s)."""
    if kind == 0:  # circle as a 24-gon
        cx, cy, r = x0 + s / 2, y0 + s / 2, s / 2
        pts = [(cx + r * math.cos(2 * math.pi * k / 24), cy + r * math.sin(2 * math.pi * k / 24))
               for k in range(24)]
    elif kind == 1:  # axis-aligned square
        pts = [(x0, y0), (x0 + s, y0), (x0 + s, y0 + s), (x0, y0 + s)]
    elif kind == 2:  # upward triangle
        pts = [(x0 + s / 2, y0), (x0 + s, y0 + s), (x0, y0 + s)]
    else:  # plus sign with arms one third of the extent thick
        a, b, e = s / 3, 2 * s / 3, s
        rel = [(a, 0), (b, 0), (b, a), (e, a), (e, b), (b, b),
               (b, e), (a, e), (a, b), (0, b), (0, a), (a, a)]
        pts = [(x0 + u, y0 + v) for u, v in rel]
    # Rounded once: the stored polygon is exactly what gets rasterised.
    return [(round(x, 2), round(y, 2)) for x, y in pts]


def rasterise(polygon: list[float], width: int, height: int) -> np.ndarray:
    """Boolean mask of a COCO polygon [x1, y1, x2, y2, ...], exactly as drawn in the images.

    Pillow truncates vertices to whole pixels and fills inclusively, so the mask holds
    every pixel [i, i + 1) the outline reaches: the tight pixel box contains the polygon.
    """
    pts = list(zip(polygon[::2], polygon[1::2]))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon(pts, fill=1)
    return np.asarray(mask, dtype=bool)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Linear gradient between two random colours in a random direction, plus mild noise."""
    c0, c1 = rng.uniform(30, 225, size=(2, 3))
    theta = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xs * math.cos(theta) + ys * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + t[..., None] * (c1 - c0)
    img += rng.normal(0.0, 4.0, size=img.shape)
    return img


def _pick_colour(rng: np.random.Generator, covered: np.ndarray) -> np.ndarray | None:
    """A random colour that stands out from the pixels it will cover (N, 3), or None."""
    for _ in range(20):
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        dist = np.abs(covered - colour).sum(axis=1)
        if np.mean(dist < MIN_CONTRAST) <= MAX_LOW_CONTRAST:
            return colour
    return None


def _cover(a: list[float], b: list[float]) -> float:
    """Fraction of box b (x1, y1, x2, y2) covered by box a."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / ((b[2] - b[0]) * (b[3] - b[1]))


def _make_image(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, list[dict]]:
    """One picture (H, W, 3 uint8) and its objects (category_id, bbox, area, segmentation)."""
    width = height = image_size
    if rng.random() < NON_SQUARE_PROB:
        long_side = int(round(image_size * 1.25))
        if rng.random() < 0.5:
            width = long_side
        else:
            height = long_side
    canvas = _background(rng, width, height)
    scale = image_size / 128
    objects: list[dict] = []
    boxes: list[list[float]] = []
    owner = np.zeros((height, width), dtype=np.int16)  # 1 + index of the object on top, 0 = bg
    for _ in range(int(rng.integers(1, 5))):
        for _ in range(PLACEMENT_TRIES):
            kind = int(rng.integers(0, len(CATEGORIES)))
            s = float(rng.uniform(MIN_SIZE, MAX_SIZE)) * scale
            x0 = float(rng.uniform(1, width - 1 - s))
            y0 = float(rng.uniform(1, height - 1 - s))
            polygon = [c for xy in _outline(kind, x0, y0, s) for c in xy]
            mask = rasterise(polygon, width, height)
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            if any(_cover(box, old) > MAX_COVER for old in boxes):
                continue
            hidden = np.bincount(owner[mask], minlength=len(objects) + 1)[1:]
            if any(h > MAX_HIDDEN * o["area"] for h, o in zip(hidden, objects)):
                continue
            colour = _pick_colour(rng, canvas[mask])
            if colour is None:
                continue
            canvas[mask] = colour
            owner[mask] = len(objects) + 1
            boxes.append(box)
            objects.append({
                "category_id": kind + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "area": float(mask.sum()),
                "segmentation": [polygon],
            })
            break
    return np.clip(canvas, 0, 255).round().astype(np.uint8), objects


def _write_split(rng: np.random.Generator, count: int, image_size: int,
                 image_dir: Path, ann_file: Path) -> None:
    images: list[dict] = []
    annotations: list[dict] = []
    for i in range(count):
        pixels, objects = _make_image(rng, image_size)
        file_name = f"{i:06d}.png"
        save_png = partial(Image.fromarray(pixels, "RGB").save, format="PNG", compress_level=1)
        atomic_write(image_dir / file_name, save_png)
        image_id = i + 1  # COCO tools treat id 0 badly in places; start at 1
        images.append({"id": image_id, "file_name": file_name,
                       "width": int(pixels.shape[1]), "height": int(pixels.shape[0])})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "iscrowd": 0, **obj})
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"}
                       for k, name in enumerate(CATEGORIES)],
    }
    atomic_write_text(ann_file, json.dumps(coco, separators=(",", ":")))


def generate_shapes(out_dir: str | Path, num_train: int = 600, num_val: int = 100,
                    seed: int = 0, image_size: int = 128, format: str = "coco") -> dict[str, Path]:
    """Write train/val images and COCO json under out_dir; same seed gives identical bytes.
    format "voc" or "yolo": the same set in that layout, converted from the COCO one."""
    if image_size < 64:
        raise ValueError(f"image_size must be >= 64, got {image_size}")
    out = Path(out_dir)
    if format != "coco":
        return _write_in_layout(out, format, num_train, num_val, seed, image_size)
    # Independent streams so the val split does not depend on num_train.
    train_seq, val_seq = np.random.SeedSequence(seed).spawn(2)
    paths = {
        "train_ann": out / "annotations" / "train.json",
        "train_images": out / "train",
        "val_ann": out / "annotations" / "val.json",
        "val_images": out / "val",
    }
    _write_split(np.random.default_rng(train_seq), num_train, image_size,
                 paths["train_images"], paths["train_ann"])
    _write_split(np.random.default_rng(val_seq), num_val, image_size,
                 paths["val_images"], paths["val_ann"])
    return paths


def _write_in_layout(out: Path, format: str, num_train: int, num_val: int, seed: int,
                     image_size: int) -> dict[str, Path]:
    """VOC: one root, ids prefixed by split (train_000000) as both splits share JPEGImages/.
    YOLO: images/SPLIT, labels/SPLIT and data.yaml."""
    if format not in ("voc", "yolo"):
        raise ValueError(f"format must be coco, voc or yolo, got {format!r}")
    with tempfile.TemporaryDirectory() as tmp:
        coco_paths = generate_shapes(tmp, num_train, num_val, seed, image_size)
        for split in ("train", "val"):
            coco = json.loads(coco_paths[f"{split}_ann"].read_text())
            if format == "voc":
                write_voc(coco, coco_paths[f"{split}_images"], out, split, id_prefix=f"{split}_")
            else:
                write_yolo(coco, coco_paths[f"{split}_images"], out, split)
    if format == "voc":
        return {"root": out}
    return {"data_yaml": write_data_yaml(out, ["train", "val"], CATEGORIES)}
