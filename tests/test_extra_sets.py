"""A training split made of several COCO sets (SimpleDet's image_set tuples, e.g. train2017 +
val2017): one dataset with every image and box, refusals that name the file."""

import json

import numpy as np
import pytest
from PIL import Image

from simpledet.config import load_config
from simpledet.data.datasets import open_dataset
from simpledet.errors import UserError

from .helpers import QUICKSTART

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 3, "name": "square"}]


def _coco_set(root, name, image_ids, categories=CATEGORIES):
    images_dir = root / name
    images_dir.mkdir()
    images, annotations = [], []
    for image_id in image_ids:
        Image.fromarray(np.full((20, 30, 3), image_id, np.uint8)).save(images_dir / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 30, "height": 20})
        annotations.append({"id": 100 + image_id, "image_id": image_id, "category_id": categories[-1]["id"],
                            "bbox": [2.0, 3.0, 10.0, 5.0], "area": 50.0, "iscrowd": 0})
    ann = root / f"{name}.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann, images_dir


def test_extra_sets_read_into_one_split(tmp_path):
    train_ann, train_dir = _coco_set(tmp_path, "train", [1, 2])
    val_ann, val_dir = _coco_set(tmp_path, "val", [7, 1])  # ids numbered afresh: 1 twice is fine
    cfg = load_config(QUICKSTART, [f"data.train.ann_file={train_ann}", f"data.train.image_dir={train_dir}",
                                   f"data.train.extra_sets=(({str(val_ann)!r}, {str(val_dir)!r}),)"])
    assert cfg.data.train.extra_sets == ((str(val_ann), str(val_dir)),)
    dataset = open_dataset(cfg.data.train, train=True)
    assert len(dataset) == 4
    # every image read from its own set's folder: the pixel value is the image id in its set
    pixels = sorted(int(dataset[i][0][0, 0, 0].item() * 255 + 0.5) for i in range(4))
    assert pixels == [1, 1, 2, 7]
    assert [len(dataset[i][1]["boxes"]) for i in range(4)] == [1, 1, 1, 1]
    assert sorted(im["id"] for im in dataset.ground_truth["images"]) == [1, 2, 3, 4]
    assert dataset.category_names == ["circle", "square"]


def test_extra_sets_refusals(tmp_path):
    train_ann, train_dir = _coco_set(tmp_path, "train", [1, 2])
    other_ann, other_dir = _coco_set(tmp_path, "other", [9], categories=[{"id": 1, "name": "hexagon"}])
    base = [f"data.train.ann_file={train_ann}", f"data.train.image_dir={train_dir}"]
    cfg = load_config(QUICKSTART, base + [f"data.train.extra_sets=(({str(other_ann)!r}, {str(other_dir)!r}),)"])
    with pytest.raises(UserError, match=r"other.json: categories 'hexagon' are not in .*train.json"):
        open_dataset(cfg.data.train, train=True)
    cfg = load_config(QUICKSTART, base + [f"data.train.extra_sets=(({str(other_ann)!r}, 'nowhere'),)"])
    with pytest.raises(UserError, match=r"nowhere: image directory not found"):
        open_dataset(cfg.data.train, train=True)


def test_voc_sets_read_into_one_split(tmp_path):
    """VOC 2007 + 2012 trainval, as SimpleDet's VOC configs train: both numbered from 1 in their
    own files, every object kept once."""
    from simpledet.data.shapes import generate_shapes
    from simpledet.data.voc import write_voc

    roots = []
    for year, seed in (("2007", 1), ("2012", 2)):
        shapes = tmp_path / f"shapes{year}"
        generate_shapes(shapes, num_train=8, num_val=1, seed=seed)
        root = tmp_path / f"VOC{year}"
        coco = json.loads((shapes / "annotations" / "train.json").read_text())
        write_voc(coco, shapes / "train", root, "train")
        roots.append((root, coco))
    cfg = load_config(QUICKSTART, ["data.train.format=voc", f"data.train.ann_file={roots[0][0]}",
                                   "data.train.split=train",
                                   f"data.train.extra_sets=(({str(roots[1][0])!r}, 'train'),)"])
    dataset = open_dataset(cfg.data.train, train=True)
    assert len(dataset) == 16
    boxes = sum(len(dataset[i][1]["boxes"]) for i in range(16))
    assert boxes == sum(len(coco["annotations"]) for _, coco in roots)
    # the classes are matched by name: every box of the merged set names the class it had in its file
    names = {c["id"]: c["name"] for c in dataset.ground_truth["categories"]}
    merged = sorted(names[a["category_id"]] for a in dataset.ground_truth["annotations"])
    assert merged == sorted({c["id"]: c["name"] for c in coco["categories"]}[a["category_id"]]
                            for _, coco in roots for a in coco["annotations"])
