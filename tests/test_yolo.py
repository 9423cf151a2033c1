"""YOLO (ultralytics layout): hand-written labels read to known pixel boxes, background images,
list files, names as a list or a map, the COCO -> YOLO -> COCO round trip, bad input, and a
detector trained on VOC and evaluated on YOLO through the CLI."""

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from simpledet.cli import main
from simpledet.config import DatasetConfig
from simpledet.data.coco import load_coco_json
from simpledet.data.datasets import open_dataset
from simpledet.data.yolo import label_path, read_yolo, write_data_yaml, write_yolo
from simpledet.engine.evaluator import STAT_NAMES
from simpledet.errors import UserError

from .helpers import QUICKSTART


def _image(path: Path, size: tuple) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 100, 50)).save(path)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


DATA_YAML = "path: ds\ntrain: images/train\nval: val.txt\nnames: [person, car]\n"


@pytest.fixture
def yolo_set(tmp_path: Path) -> Path:
    """ds/images/train: p.jpg (100x50, a box and a polygon) and q.png (80x80, no label file: a
    background image); val.txt lists p.jpg and other/r.jpg (60x40, label beside it)."""
    ds = tmp_path / "ds"
    _image(ds / "images" / "train" / "p.jpg", (100, 50))
    _image(ds / "images" / "train" / "q.png", (80, 80))
    _image(ds / "other" / "r.jpg", (60, 40))
    _write(ds / "labels" / "train" / "p.txt", "0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.3 0.1 0.3 0.5\n")
    _write(ds / "other" / "r.txt", "1 0.25 0.5 0.5 0.5\n")
    _write(ds / "val.txt", "./images/train/p.jpg\nother/r.jpg\n")
    return _write(tmp_path / "data.yaml", DATA_YAML)


def test_label_path_is_ultralytics_rule() -> None:
    def native(path: str) -> str:
        return path.replace("/", os.sep)

    assert str(label_path(native("/d/images/a/images/x.jpg"))) == native("/d/images/a/labels/x.txt")
    assert str(label_path(native("/d/pics/x.png"))) == native("/d/pics/x.txt")


def test_reads_normalised_boxes_polygons_and_background_images(yolo_set: Path) -> None:
    records = read_yolo(yolo_set, "train")
    coco = records.coco
    ds = yolo_set.parent / "ds"
    assert records.image_dir == ds / "images" / "train" and records.source == yolo_set
    assert coco["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]
    assert coco["images"] == [{"id": 1, "file_name": "p.jpg", "width": 100, "height": 50},
                              {"id": 2, "file_name": "q.png", "width": 80, "height": 80}]
    anns = coco["annotations"]
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in anns] == [(1, 1, 0), (1, 2, 0)]
    # cx 0.5, cy 0.5, w 0.2, h 0.4 of 100x50: x = 40, y = 15, w = 20, h = 20
    assert anns[0]["bbox"] == pytest.approx([40, 15, 20, 20], abs=1e-9)
    # polygon (0.1, 0.1) (0.3, 0.1) (0.3, 0.5): its box spans x 10..30, y 5..25
    assert anns[1]["bbox"] == pytest.approx([10, 5, 20, 20], abs=1e-9)
    assert anns[0]["area"] == pytest.approx(400)
    assert records.annotation_where == {1: f"{ds / 'labels' / 'train' / 'p.txt'}:1",
                                        2: f"{ds / 'labels' / 'train' / 'p.txt'}:3"}


def test_background_images_kept_for_evaluation_skipped_in_training(yolo_set: Path) -> None:
    split = DatasetConfig(ann_file=str(yolo_set), format="yolo", split="train")
    evaluation, training = open_dataset(split), open_dataset(split, train=True)
    assert len(evaluation) == 2 and len(evaluation.ground_truth["images"]) == 2
    assert len(training) == 1 and training.image_info(0)["file_name"] == "p.jpg"
    image, target = training[0]
    assert tuple(image.shape) == (3, 50, 100) and target["labels"].tolist() == [1, 2]
    assert target["boxes"].flatten().tolist() == pytest.approx([40, 15, 60, 35, 10, 5, 30, 25], abs=1e-5)


def test_list_file_in_several_folders_is_relative_to_path(yolo_set: Path) -> None:
    _write(yolo_set, "path: ds\ntrain: images/train\nval: val.txt\nnames: {0: person, '1': car}\nnc: 2\n")
    records = read_yolo(yolo_set, "val")
    assert records.image_dir == yolo_set.parent / "ds"
    assert [im["file_name"] for im in records.coco["images"]] == ["images/train/p.jpg", "other/r.jpg"]
    assert [c["name"] for c in records.coco["categories"]] == ["person", "car"]
    # r.jpg (60x40): cx 0.25, cy 0.5, w 0.5, h 0.5 -> x 0, y 10, w 30, h 20
    assert records.coco["annotations"][-1]["bbox"] == pytest.approx([0, 10, 30, 20], abs=1e-9)


def test_an_image_listed_twice_is_read_once(yolo_set: Path, caplog) -> None:
    _write(yolo_set.parent / "ds" / "val.txt", "other/r.jpg\n./images/train/p.jpg\n./other/r.jpg\n")
    records = read_yolo(yolo_set, "val")
    assert [im["file_name"] for im in records.coco["images"]] == ["other/r.jpg", "images/train/p.jpg"]
    assert "val.txt:3" in caplog.text and "listed again (first by" in caplog.text


def test_convert_cli_writes_coco_that_loads(yolo_set: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "val.json"
    assert main(["data", "convert", "yolo", str(yolo_set), "--split", "val", "--out", str(out)]) == 0
    assert "2 images, 3 boxes" in capsys.readouterr().out
    assert load_coco_json(out) == read_yolo(yolo_set, "val").coco


def test_round_trip_coco_yolo_coco_box_for_box(shapes_dir: Path, tmp_path: Path) -> None:
    coco = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    root = tmp_path / "yolo"
    write_yolo(coco, shapes_dir / "val", root, "val")
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    back = read_yolo(write_data_yaml(root, ["val"], names), "val").coco
    assert back["categories"] == [{"id": c["id"], "name": c["name"]} for c in coco["categories"]]
    assert [im["file_name"] for im in back["images"]] == [im["file_name"] for im in coco["images"]]
    assert len(back["annotations"]) == len(coco["annotations"])
    worst = 0.0
    for a, b in zip(coco["annotations"], back["annotations"]):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        worst = max(worst, max(abs(u - v) for u, v in zip(a["bbox"], b["bbox"])))
    assert worst <= 1e-3  # 6 decimals of a 128-160 px image


@pytest.mark.parametrize("label, message", [
    ("0 0.5 0.5 0.2\n", "p.txt:1: expected 5 numbers (class cx cy w h), got 4"),
    ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n", "p.txt:2: class index 2 is outside names (0..1)"),
    ("person 0.5 0.5 0.2 0.2\n", "p.txt:1: expected numbers"),
    ("0.5 0.5 0.5 0.2 0.2\n", "p.txt:1: the class index must be an integer"),
])
def test_bad_label_line_is_one_error_naming_file_and_line(yolo_set: Path, tmp_path: Path, capsys,
                                                          label: str, message: str) -> None:
    _write(yolo_set.parent / "ds" / "labels" / "train" / "p.txt", label)
    with pytest.raises(UserError) as caught:
        read_yolo(yolo_set, "train")
    assert message in str(caught.value)
    out = tmp_path / "out.json"
    assert main(["data", "convert", "yolo", str(yolo_set), "--split", "train", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("text, message", [
    (DATA_YAML.replace("images/train", "images/missing"), "train: 'images/missing' is neither an image folder"),
    (DATA_YAML.replace("path: ds", "path: nowhere"), "path 'nowhere': folder"),
    ("path: ds\ntrain: [images/train\nnames: [a]\n", "data.yaml:3: malformed YAML"),
    (DATA_YAML.replace("[person, car]", "{0: person, 2: car}"), "keys must number the classes 0..1"),
    (DATA_YAML + "nc: 3\n", "nc is 3 but names has 2 classes"),
    (DATA_YAML.replace("[person, car]", "[yes, car]"), "names[0] must be a class name, got True"),
    (DATA_YAML.replace("train: images/train", "test: images/train"), "train: expected an image folder"),
])
def test_bad_data_yaml_names_it(yolo_set: Path, text: str, message: str) -> None:
    _write(yolo_set, text)
    with pytest.raises(UserError) as caught:
        read_yolo(yolo_set, "train")
    assert str(yolo_set) in str(caught.value) and message in str(caught.value)


def test_train_on_voc_and_evaluate_on_yolo_through_the_cli(tmp_path: Path) -> None:
    assert main(["data", "shapes", str(tmp_path / "voc"), "--format", "voc", "--train", "4", "--val", "2"]) == 0
    assert main(["data", "shapes", str(tmp_path / "yolo"), "--format", "yolo", "--train", "4", "--val", "2"]) == 0
    data = ["data.train.format=voc", f"data.train.ann_file={tmp_path / 'voc'}", "data.train.split=train",
            "data.val.format=yolo", f"data.val.ann_file={tmp_path / 'yolo' / 'data.yaml'}", "data.val.split=val",
            "data.num_workers=0", "data.eval_batch_size=2", "model.input.min_size=(64,)", "model.input.max_size=80"]
    run = tmp_path / "run"
    assert main(["train", str(QUICKSTART), "--out", str(run), *data, "train.max_iter=2", "train.batch_size=1",
                 "train.log_every=1", "train.checkpoint_every=100", "train.tensorboard=false"]) == 0
    assert main(["eval", str(QUICKSTART), "--weights", str(run / "model_final.safetensors"),
                 "--out", str(tmp_path / "eval"), *data]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(STAT_NAMES) <= set(metrics) and all(-1 <= metrics[k] <= 1 for k in STAT_NAMES)

    # VOC sorts its class names, data.yaml keeps its own order: the model's labels are matched to
    # each set's category ids by name, so both evaluations name the same class for each detection
    voc_val = [f"data.val.ann_file={tmp_path / 'voc'}" if x.startswith("data.val.ann_file=") else
               "data.val.format=voc" if x == "data.val.format=yolo" else x for x in data]
    assert main(["eval", str(QUICKSTART), "--weights", str(run / "model_final.safetensors"),
                 "--out", str(tmp_path / "eval_voc"), *voc_val]) == 0
    named, orders = [], []
    for fmt, root, out in (("yolo", tmp_path / "yolo" / "data.yaml", "eval"), ("voc", tmp_path / "voc", "eval_voc")):
        val = open_dataset(DatasetConfig(ann_file=str(root), format=fmt, split="val"))
        name_of = dict(zip(val.category_ids, val.category_names))
        named.append(sorted((r["image_id"], name_of[r["category_id"]], r["score"])
                            for r in json.loads((tmp_path / out / "detections.json").read_text())))
        orders.append(val.category_names)
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])
    assert named[0] and named[0] == named[1]


@pytest.mark.parametrize("fields, message", [
    ({"format": "voc", "ann_file": "root"}, "data.val.split: set it to the VOC split to read"),
    ({"format": "yolo", "split": "val"}, "data.val.ann_file: set it to the data.yaml (data.val.format=yolo)"),
    ({"format": "pascal", "ann_file": "x"}, "data.val.format: unknown format 'pascal'; choose one of coco, voc, yolo"),
])
def test_an_incomplete_split_names_the_key_to_set(fields, message) -> None:
    with pytest.raises(UserError) as caught:
        open_dataset(DatasetConfig(**fields), key="data.val")
    assert message in str(caught.value)
