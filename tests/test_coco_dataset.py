"""CocoDetection: label mapping, mirrored copies, box cleaning, input validation."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from simpledet.data.coco import CocoDetection, collate
from simpledet.errors import UserError

LOGGER = "simpledet.data.coco"


def _coco(sizes: list[tuple[int, int]], anns: list[dict], cat_ids: tuple[int, ...] = (1,)) -> dict:
    """COCO dict with images 1..n of the given (width, height); annotation ids from 40."""
    return {
        "images": [{"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h}
                   for i, (w, h) in enumerate(sizes)],
        "annotations": [{"id": 40 + k, "iscrowd": 0, **a} for k, a in enumerate(anns)],
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids],
    }


def _write(tmp_path: Path, coco: dict, mode: str = "RGB") -> Path:
    """Writes the json and a random picture per image; returns the json path."""
    rng = np.random.default_rng(0)
    for im in coco["images"]:
        pixels = rng.integers(0, 256, size=(im["height"], im["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").convert(mode).save(tmp_path / im["file_name"])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def test_category_ids_with_zero_and_gaps_map_to_contiguous_labels(tmp_path: Path) -> None:
    anns = [{"image_id": 1, "category_id": c, "bbox": [1, 1, 4, 4]} for c in (7, 0, 3)]
    ds = CocoDetection(_write(tmp_path, _coco([(16, 12)], anns, cat_ids=(7, 0, 3))), tmp_path)
    assert ds.category_ids == [0, 3, 7]
    assert ds.category_names == ["c0", "c3", "c7"]
    assert ds.category_id_to_label == {0: 1, 3: 2, 7: 3}
    assert ds.label_to_category_id == {1: 0, 2: 3, 3: 7}
    image, target = ds[0]
    assert target["labels"].tolist() == [3, 1, 2]
    assert target["labels"].dtype == torch.int64
    assert image.dtype == torch.float32 and image.shape == (3, 12, 16)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["image_id"] == 1 and target["orig_size"] == (12, 16)
    assert ds.image_info(0) == {"image_id": 1, "file_name": "0.png", "width": 16, "height": 12}


def test_flip_copies_mirror_image_and_boxes(tmp_path: Path) -> None:
    anns = [{"image_id": 1, "category_id": 1, "bbox": [2, 1, 5, 4]},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 3, 3]}]
    ds = CocoDetection(_write(tmp_path, _coco([(20, 10), (8, 16)], anns)), tmp_path,
                       flip_copies=True)
    assert len(ds) == 4
    assert ds.aspect_ratios == [2.0, 0.5, 2.0, 0.5]
    img, tgt = ds[0]
    flipped_img, flipped_tgt = ds[2]
    assert tgt["boxes"].tolist() == [[2.0, 1.0, 7.0, 5.0]]
    assert flipped_tgt["boxes"].tolist() == [[13.0, 1.0, 18.0, 5.0]]  # x1' = W - x2, x2' = W - x1
    assert flipped_tgt["boxes"].dtype == torch.float32
    assert type(flipped_tgt["boxes"]) is torch.Tensor  # plain tensor, not a tv_tensor
    assert torch.equal(flipped_img, img.flip(-1))
    assert ds[3][1]["boxes"].tolist() == [[5.0, 0.0, 8.0, 3.0]]
    assert ds.image_info(3) == ds.image_info(1)
    with pytest.raises(IndexError):
        ds[4]


def test_boxes_clipped_and_dropped_are_counted(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    anns = [{"image_id": 1, "category_id": 1, "bbox": b} for b in
            ([-5, 2, 10, 3], [15, 0, 10, 5], [25, 0, 3, 3], [1, 1, 0, 4], [1, 1, 3, 3])]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = CocoDetection(_write(tmp_path, _coco([(20, 10)], anns)), tmp_path)
    assert ds[0][1]["boxes"].tolist() == [[0, 2, 5, 5], [15, 0, 20, 5], [1, 1, 4, 4]]
    assert ds.stats["boxes_clipped"] == 2 and ds.stats["boxes_dropped"] == 2
    assert len(caplog.records) == 1 and "annotations.json" in caplog.text
    # each dropped box named by its record, so that it can be fixed
    assert "annotations[2]" in caplog.text and "bbox [25, 0, 3, 3]" in caplog.text
    assert "annotations[3]" in caplog.text and "bbox [1, 1, 0, 4]" in caplog.text


def test_crowd_and_empty_images(tmp_path: Path) -> None:
    anns = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
            {"image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], "iscrowd": 1},
            {"image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 1}]
    path = _write(tmp_path, _coco([(10, 10), (10, 10), (12, 10)], anns))
    test_ds = CocoDetection(path, tmp_path)
    assert len(test_ds) == 3 and test_ds.stats["crowd_boxes"] == 2
    assert test_ds[0][1]["boxes"].tolist() == [[1, 1, 5, 5]]
    _, empty = test_ds[2]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    train_ds = CocoDetection(path, tmp_path, train=True)
    assert len(train_ds) == 1 and train_ds.image_info(0)["image_id"] == 1


def test_image_info_only_file_without_annotations(tmp_path: Path) -> None:
    coco = _coco([(10, 10)], [])
    del coco["annotations"]
    ds = CocoDetection(_write(tmp_path, coco), tmp_path)
    assert len(ds) == 1 and ds[0][1]["boxes"].shape == (0, 4)
    with pytest.raises(UserError, match="nothing to train on"):
        CocoDetection(tmp_path / "annotations.json", tmp_path, train=True)


def _set(section: str, i: int, key: str, value: Any) -> Callable[[dict], None]:
    def edit(coco: dict) -> None:
        coco[section][i][key] = value
    return edit


def _drop(section: str, i: int | None = None, key: str | None = None) -> Callable[[dict], None]:
    def edit(coco: dict) -> None:
        if i is None:
            del coco[section]
        else:
            del coco[section][i][key]
    return edit


def _put(section: str, value: Any) -> Callable[[dict], None]:
    def edit(coco: dict) -> None:
        coco[section] = value
    return edit


def _replace(section: str, i: int, value: Any) -> Callable[[dict], None]:
    def edit(coco: dict) -> None:
        coco[section][i] = value
    return edit


BAD_INPUTS = [
    (_drop("images"), "missing top-level key 'images'"),
    (_drop("categories"), "missing top-level key 'categories'"),
    (_replace("images", 1, 5), "images[1] must be an object"),
    (_drop("images", 1, "file_name"), "images[1] (id 2): missing required key 'file_name'"),
    (_set("images", 1, "width", "wide"), "images[1] (id 2): width must be a positive number"),
    (_set("images", 1, "height", 0), "images[1] (id 2): height must be a positive number"),
    (_set("images", 1, "id", 1), "images[1] (id 1): duplicate id"),
    (_drop("annotations", 1, "image_id"), "annotations[1] (id 41): missing required key"),
    (_set("annotations", 1, "bbox", [1, 2]),
     "annotations[1] (id 41): bbox must be 4 numbers, got [1, 2]"),
    (_set("annotations", 1, "bbox", [1, 2, "3", 4]), "annotations[1] (id 41): bbox must be"),
    (_set("annotations", 1, "image_id", 99), "annotations[1] (id 41): image_id 99 does not match"),
    (_set("annotations", 1, "category_id", 9),
     "annotations[1] (id 41): category_id 9 does not match"),
    (_set("annotations", 1, "category_id", "1"), "annotations[1] (id 41): category_id must be"),
    (_drop("categories", 0, "name"), "categories[0] (id 1): missing required key 'name'"),
    (_put("annotations", {"not": "a list"}), "'annotations' must be a list, got dict"),
    (_put("categories", []), "'categories' is empty"),
    (_replace("annotations", 0, [1]), "annotations[0] must be an object, got list"),
]


@pytest.mark.parametrize("edit,message", BAD_INPUTS)
def test_bad_annotation_file_raises_user_error(tmp_path: Path, edit: Callable[[dict], None],
                                               message: str) -> None:
    anns = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
            {"image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4]}]
    coco = _coco([(10, 10), (10, 10)], anns)
    edit(coco)
    path = tmp_path / "annotations.json"  # validation comes before any image is opened
    path.write_text(json.dumps(coco))
    with pytest.raises(UserError) as err:
        CocoDetection(path, tmp_path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("text,message", [
    (None, "annotation file not found"),
    ('{"images": [}', "not valid JSON: Expecting value at line 1, column 13"),
    ("[1, 2]", "top level must be a JSON object"),
])
def test_unreadable_annotation_file(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "annotations.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as err:
        CocoDetection(path, tmp_path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unreadable_images_name_the_file_and_the_annotation_file(tmp_path: Path) -> None:
    anns = [{"image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4]} for i in (1, 2, 3)]
    path = _write(tmp_path, _coco([(10, 10)] * 3, anns))
    (tmp_path / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "2.png").unlink()
    ds = CocoDetection(path, tmp_path, flip_copies=True)
    for index, name, reason in [(1, "1.png", "cannot identify image file"), (4, "1.png", "cannot identify image file"),
                                (2, "2.png", "No such file or directory")]:
        with pytest.raises(UserError) as err:
            ds[index]
        assert str(err.value).startswith(f"{tmp_path / name}: cannot read image (") and reason in str(err.value)
        assert str(err.value).endswith(f"it is an image of {path}")
    images, targets = collate([ds[0], ds[3]])
    assert len(images) == len(targets) == 2 and [t["image_id"] for t in targets] == [1, 1]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_non_rgb_images_become_rgb(tmp_path: Path, mode: str) -> None:
    anns = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}]
    ds = CocoDetection(_write(tmp_path, _coco([(9, 7)], anns), mode=mode), tmp_path)
    image, _ = ds[0]
    assert image.shape == (3, 7, 9) and image.dtype == torch.float32


def test_size_mismatch_rescales_boxes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    anns = [{"image_id": 1, "category_id": 1, "bbox": [2, 1, 4, 3]}]
    path = _write(tmp_path, _coco([(20, 10)], anns))
    Image.new("RGB", (40, 20)).save(tmp_path / "0.png")
    ds = CocoDetection(path, tmp_path, flip_copies=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        image, target = ds[0]
        _, flipped = ds[1]
    assert image.shape == (3, 20, 40) and target["orig_size"] == (20, 40)
    assert target["boxes"].tolist() == [[4, 2, 12, 8]]
    assert flipped["boxes"].tolist() == [[28, 2, 36, 8]]
    assert ds.stats["size_mismatch"] == 1 and len(caplog.records) == 1


# ---------------------------------------------------------------- instance masks (Mask R-CNN)

def _rle(mask: np.ndarray, compressed: bool) -> dict:
    """COCO RLE of a (H, W) mask: compressed (string counts) or uncompressed (list counts)."""
    from pycocotools import mask as mask_utils

    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    flat = mask.astype(np.uint8).flatten(order="F")  # column-major runs, starting with zeros
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def test_masks_from_polygons_and_rles_follow_boxes_and_flips(tmp_path: Path) -> None:
    square = np.zeros((10, 20), dtype=bool)
    square[2:6, 3:9] = True
    strip = np.zeros((10, 20), dtype=bool)
    strip[7:9, 10:19] = True
    anns = [
        # polygon rasterised by pycocotools: the pixels whose centres lie inside (plus edges)
        {"image_id": 1, "category_id": 1, "bbox": [3, 2, 6, 4], "segmentation": [[3, 2, 9, 2, 9, 6, 3, 6]]},
        {"image_id": 1, "category_id": 1, "bbox": [3, 2, 6, 4], "segmentation": _rle(square, True)},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1, "segmentation": _rle(square, True)},
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 3], "segmentation": [[1, 1, 2, 1, 2, 4]]},  # dropped
        {"image_id": 1, "category_id": 1, "bbox": [10, 7, 9, 2], "segmentation": _rle(strip, False)},
    ]
    ds = CocoDetection(_write(tmp_path, _coco([(20, 10)], anns)), tmp_path, flip_copies=True, with_masks=True)
    _, target = ds[0]
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (3, 10, 20) == (len(target["boxes"]), 10, 20)
    from pycocotools import mask as mask_utils
    polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[3, 2, 9, 2, 9, 6, 3, 6]], 10, 20)))
    assert torch.equal(masks[0], torch.from_numpy(polygon))
    assert masks[0, 2:6, 3:9].all()  # the polygon covers at least the pixels inside it
    assert torch.equal(masks[1], torch.from_numpy(square).to(torch.uint8))
    assert torch.equal(masks[2], torch.from_numpy(strip).to(torch.uint8))
    _, flipped = ds[1]
    assert torch.equal(flipped["masks"], masks.flip(-1))
    assert flipped["boxes"][2].tolist() == [1.0, 7.0, 10.0, 9.0]
    assert flipped["masks"][2, 7:9, 1:10].all() and flipped["masks"][2].sum() == 18
    assert "masks" not in CocoDetection(tmp_path / "annotations.json", tmp_path)[0][1]


def test_masks_of_empty_images_and_resized_images(tmp_path: Path) -> None:
    full = np.ones((10, 20), dtype=bool)
    anns = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 10], "segmentation": _rle(full, False)}]
    path = _write(tmp_path, _coco([(20, 10), (8, 6)], anns))
    Image.new("RGB", (40, 20)).save(tmp_path / "0.png")  # twice the annotated size
    ds = CocoDetection(path, tmp_path, with_masks=True)
    assert ds[0][1]["masks"].shape == (1, 20, 40) and ds[0][1]["masks"].all()
    assert ds[1][1]["masks"].shape == (0, 6, 8) and ds[1][1]["masks"].dtype == torch.uint8


@pytest.mark.parametrize("segmentation, message", [
    (None, "missing 'segmentation'"),
    ([[1, 2, 3]], "polygons must be lists of x, y numbers"),
    ({"size": [5, 5], "counts": "abc"}, "is not the image's"),
    ({"size": [10, 20], "counts": [1.5]}, "RLE counts"),
    ("oops", "list of polygons or an RLE"),
])
def test_bad_segmentation_names_the_annotation(tmp_path: Path, segmentation: Any, message: str) -> None:
    ann = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}
    if segmentation is not None:
        ann["segmentation"] = segmentation
    path = _write(tmp_path, _coco([(20, 10)], [ann]))
    CocoDetection(path, tmp_path)  # boxes alone need no masks
    with pytest.raises(UserError, match=rf"annotations\[0\] \(id 40\): .*{message}"):
        CocoDetection(path, tmp_path, with_masks=True)
