"""Synthetic shapes dataset: determinism, tight boxes, valid COCO."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from simpledet.data.shapes import generate_shapes, rasterise


def _all_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), num_train=24, num_val=6, seed=3)


def test_returned_paths_and_counts(shapes: dict[str, Path]) -> None:
    assert set(shapes) == {"train_ann", "train_images", "val_ann", "val_images"}
    for split, n in (("train", 24), ("val", 6)):
        data = json.loads(shapes[f"{split}_ann"].read_text())
        assert len(data["images"]) == n
        assert len(list(shapes[f"{split}_images"].glob("*.png"))) == n
        assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
        assert [c["name"] for c in data["categories"]] == ["circle", "square", "triangle", "cross"]
        per_image = Counter(a["image_id"] for a in data["annotations"])
        assert all(1 <= per_image[im["id"]] <= 4 for im in data["images"])
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    generate_shapes(tmp_path / "a", num_train=5, num_val=2, seed=7)
    generate_shapes(tmp_path / "b", num_train=5, num_val=2, seed=7)
    generate_shapes(tmp_path / "c", num_train=5, num_val=2, seed=8)
    a, b, c = (_all_bytes(tmp_path / d) for d in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert a["annotations/train.json"] != c["annotations/train.json"]


def test_boxes_tight_inside_and_picture_agrees(shapes: dict[str, Path]) -> None:
    data = json.loads(shapes["train_ann"].read_text())
    images = {im["id"]: im for im in data["images"]}
    for ann in data["annotations"]:
        im = images[ann["image_id"]]
        w, h = im["width"], im["height"]
        assert max(w, h) <= 160 and min(w, h) == 128
        x, y, bw, bh = ann["bbox"]
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
        assert 16 * 0.8 <= max(bw, bh) <= 56 + 2
        assert ann["iscrowd"] == 0
        poly = ann["segmentation"][0]
        if ann["category_id"] == 1:
            assert len(poly) == 48  # circle as a 24-gon
        assert x <= min(poly[::2]) and max(poly[::2]) <= x + bw
        assert y <= min(poly[1::2]) and max(poly[1::2]) <= y + bh
        mask = rasterise(poly, w, h)
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == ann["bbox"]
        assert ann["area"] == mask.sum()
        # Most of the mask shows one flat colour (only a little may be hidden by later objects).
        pixels = np.asarray(Image.open(shapes["train_images"] / im["file_name"]))[mask]
        _, counts = np.unique(pixels, axis=0, return_counts=True)
        assert counts.max() >= 0.8 * len(pixels)
        assert Image.open(shapes["train_images"] / im["file_name"]).mode == "RGB"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_loadable_by_pycocotools(shapes: dict[str, Path]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
        coco = COCO(str(shapes["val_ann"]))
    assert sorted(coco.getCatIds()) == [1, 2, 3, 4]
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        # pycocotools samples pixel centres, Pillow fills every pixel the outline reaches:
        # its mask sits inside the box, at most a pixel or two (triangle apex) smaller.
        assert 0 <= xs.min() - x <= 2 and 0 <= ys.min() - y <= 2
        assert 0 <= x + w - (xs.max() + 1) <= 2 and 0 <= y + h - (ys.max() + 1) <= 2
