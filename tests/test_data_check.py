"""`simpledet data check`: counts and histograms against hand-counted sets, every problem of a
broken VOC, YOLO and COCO set reported with its file and line or record, exit statuses 0/1/2."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from simpledet.cli import main
from simpledet.data.shapes import generate_shapes

from .helpers import QUICKSTART
from .test_voc import _object, _xml, make_voc


def check(capsys, *args) -> tuple[int, str]:
    code = main(["data", "check", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> Path:
    """The same 4 + 2 shapes images as COCO, VOC and YOLO."""
    root = tmp_path_factory.mktemp("formats")
    for fmt in ("coco", "voc", "yolo"):
        generate_shapes(root / fmt, num_train=4, num_val=2, seed=3, format=fmt)
    return root


def _class_rows(out: str) -> dict[str, tuple[int, int]]:
    return {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^\s+\d+\s+(\w+)\s+(\d+)\s+(\d+)\s+\d+$", out, re.M)}


def test_clean_sets_pass_in_every_format_with_the_same_counts(small_sets: Path, tmp_path: Path, capsys) -> None:
    coco = json.loads((small_sets / "coco" / "annotations" / "val.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    boxes = Counter(names[a["category_id"]] for a in coco["annotations"])
    images = Counter(name for name, _ in {(names[a["category_id"]], a["image_id"]) for a in coco["annotations"]})
    expected = {name: (boxes[name], images[name]) for name in names.values()}
    coco_options = ["--image-dir", small_sets / "coco" / "val"]
    for target, options in ((small_sets / "coco" / "annotations" / "val.json", coco_options),
                            (small_sets / "voc", ["--split", "val"]),
                            (small_sets / "yolo" / "data.yaml", ["--split", "val"])):
        vis = tmp_path / target.parent.name / target.name
        code, out = check(capsys, target, *options, "--vis", vis, "--full")
        assert code == 0 and "no problems found" in out, out
        assert _class_rows(out) == expected
        assert f"2 images (0 without boxes), {len(coco['annotations'])} boxes" in out
        assert len(list(vis.glob("*.png"))) == 2


def test_config_checks_train_and_val_with_overrides(small_sets: Path, tmp_path: Path, capsys) -> None:
    vis = tmp_path / "vis"
    code, out = check(capsys, QUICKSTART, f"data.train.ann_file={small_sets / 'voc'}", "data.train.format=voc",
                      "data.train.split=train", f"data.val.ann_file={small_sets / 'yolo' / 'data.yaml'}",
                      "data.val.format=yolo", "data.val.split=val", "--vis", vis, "--num-vis", "1")
    assert code == 0
    assert f"data.train: voc {small_sets / 'voc'}, split train" in out and "data.val: yolo" in out
    assert [len(list((vis / s).glob("*.png"))) for s in ("train", "val")] == [1, 1]


def test_histogram_counts_hand_made_boxes(tmp_path: Path, capsys) -> None:
    Image.new("RGB", (128, 128)).save(tmp_path / "a.png")
    Image.new("RGB", (128, 128)).save(tmp_path / "b.png")
    sides = (4, 20, 40, 100)  # areas 16, 400, 1600, 10000
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 128, "height": 128},
                       {"id": 2, "file_name": "b.png", "width": 128, "height": 128}],
            "categories": [{"id": 5, "name": "thing"}],
            "annotations": [{"id": k, "image_id": 1, "category_id": 5, "bbox": [0, 0, s, s]}
                            for k, s in enumerate(sides, 1)]
            + [{"id": 9, "image_id": 2, "category_id": 5, "bbox": [0, 0, 8, 8], "iscrowd": 1}]}
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    code, out = check(capsys, tmp_path / "gt.json", "--image-dir", tmp_path, "--num-vis", "0")
    assert code == 0
    assert "2 images (1 without boxes), 4 boxes, 1 ignore regions" in out
    assert "images without boxes: b.png" in out
    assert re.search(r"^\s+5\s+thing\s+4\s+1\s+1$", out, re.M)
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^\s{4}(\w* ?\[[\d.]+, [\w.]+\))\s+(\d+)", out, re.M)}
    assert counts == {"small [0, 1024)": 2, "medium [1024, 9216)": 1, "large [9216, inf)": 1,
                      "[0, 8)": 1, "[8, 16)": 0, "[16, 32)": 1, "[32, 64)": 1, "[64, 128)": 1,
                      "[128, 256)": 0, "[256, 512)": 0, "[512, inf)": 0}


def test_every_problem_of_a_voc_root_is_named(tmp_path: Path, capsys) -> None:
    root = make_voc(tmp_path / "voc", {"a.jpg": (64, 48), "c.jpg": (32, 32), "f.jpg": (32, 32)}, {
        "a": _xml("a.jpg", (64, 48), [_object("dog", (1, 1, 9, 9)), _object("dog", (50, 1, 80, 9)),
                                      _object("cat", (10, 10, 9, 20))]),
        "b": "<annotation><object>\n</annotation>",
        "c": _xml("c.jpg", (64, 48), [_object("dog", (1, 1, 9, 9))]),
        "e": _xml("e.jpg", (64, 48), [_object("dog", (1, 1, 9, 9))]),
        "f": _xml("f.jpg", (32, 32), [_object("", (1, 1, 9, 9))]),
    }, {"train": ["a", "b", "c", "d", "e", "f", "a"]})
    ann, vis = root / "Annotations", tmp_path / "vis"
    code, out = check(capsys, root, "--split", "train", "--vis", vis, "--num-vis", "2")
    assert code == 1
    expected = [
        f"{ann / 'b.xml'}:2: malformed XML (mismatched tag: line 2, column 2)",
        f"{root / 'ImageSets' / 'Main' / 'train.txt'}:7: a is listed again (first on line 1); it is read once",
        f"{root / 'ImageSets' / 'Main' / 'train.txt'}:4: d: annotation file {ann / 'd.xml'} not found",
        f"{ann / 'f.xml'}: object 1: no <name>",
        f"{ann / 'c.xml'}: image {root / 'JPEGImages' / 'c.jpg'} is 32x32 but its record says 64x48",
        f"{ann / 'e.xml'}: image {root / 'JPEGImages' / 'e.jpg'} not found",
        f"{ann / 'a.xml'}: object 2 (dog): box (x, y, w, h) = (49, 0, 31, 9) reaches outside the 64x48 image",
        f"{ann / 'a.xml'}: object 3 (cat): zero area: box (x, y, w, h) = (9, 9, 0, 11)",
    ]
    for line in expected:
        assert line in out, out
    assert f"problems ({len(expected)}):" in out
    # images with problems are drawn first: a (boxes) and c (size)
    assert sorted(p.name for p in vis.iterdir()) == ["a.png", "c.png"]


def test_every_problem_of_a_yolo_set_is_named(tmp_path: Path, capsys) -> None:
    for name in ("p", "q"):
        Image.new("RGB", (100, 50)).save(tmp_path / f"{name}.png")
    (tmp_path / "p.txt").write_text("0 0.5 0.5 0.2\n3 0.5 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n1 0.5 0.5 0 0.2\n"
                                    "1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "list.txt").write_text("p.png\nq.png\nmissing.png\n")
    (tmp_path / "data.yaml").write_text("val: list.txt\nnames: [a, b]\n")
    code, out = check(capsys, tmp_path / "data.yaml", "--split", "val", "--num-vis", "0")
    assert code == 1
    labels = tmp_path / "p.txt"
    for line in (f"{labels}:1: expected 5 numbers (class cx cy w h), got 4",
                 f"{labels}:2: class index 3 is outside names (0..1)",
                 f"{tmp_path / 'list.txt'}:3: cannot read image {tmp_path / 'missing.png'} (not found)",
                 f"{labels}:3: box (x, y, w, h) = (85, 20, 20, 10) reaches outside the 100x50 image",
                 f"{labels}:4: zero area: box (x, y, w, h) = (50, 20, 0, 10)"):
        assert line in out, out
    assert "problems (5):" in out and "images without boxes: q.png" in out


def test_every_problem_of_a_coco_file_is_named(tmp_path: Path, capsys) -> None:
    for name in ("a", "b"):
        Image.new("RGB", (32, 32)).save(tmp_path / f"{name}.png")
    box = [1, 1, 5, 5]
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32},
                       {"id": 1, "file_name": "b.png", "width": 32, "height": 32},
                       {"id": 2, "file_name": "a.png", "width": 32, "height": 32}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box},
                            {"id": 1, "image_id": 1, "category_id": 1, "bbox": box},
                            {"id": 2, "image_id": 1, "category_id": 4, "bbox": box},
                            {"id": 3, "image_id": 7, "category_id": 1, "bbox": box},
                            {"id": 4, "image_id": 2, "category_id": 1}]}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(coco))
    code, out = check(capsys, gt, "--image-dir", tmp_path, "--num-vis", "0")
    assert code == 1
    for line in (f"{gt}: images[1] (id 1): duplicate id (also images[0])",
                 f"{gt}: annotations[1] (id 1): duplicate id (also annotations[0])",
                 f"{gt}: annotations[4] (id 4): missing required key 'bbox'",
                 f"{gt}: annotations[2] (id 2): unknown class: category_id 4 does not match any category",
                 f"{gt}: annotations[3] (id 3): image_id 7 does not match any image",
                 f"{tmp_path / 'a.png'}: the same image is listed 2 times (by {gt}: images[0] (id 1); "
                 f"{gt}: images[2] (id 2))"):
        assert line in out, out
    assert "problems (6):" in out


def test_full_decodes_whole_images(tmp_path: Path, capsys) -> None:
    Image.effect_noise((64, 64), 64).convert("RGB").save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not
    (tmp_path / "gt.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}))
    args = (tmp_path / "gt.json", "--image-dir", tmp_path, "--num-vis", "0")
    assert check(capsys, *args)[0] == 0
    code, out = check(capsys, *args, "--full")
    assert code == 1 and f"{tmp_path / 'a.png'} cannot be read" in out


def test_unreadable_input_is_exit_status_2(tmp_path: Path, capsys) -> None:
    code, out = check(capsys, tmp_path / "data.yaml", "--split", "val")
    assert code == 2 and "data.yaml: dataset file not found" in out
    (tmp_path / "gt.json").write_text("{")
    code, out = check(capsys, tmp_path / "gt.json", "--image-dir", tmp_path)
    assert code == 2 and "gt.json:1: not valid JSON" in out
    code, out = check(capsys, tmp_path / "gt.txt")
    assert code == 2 and "--format" in out
    code, out = check(capsys, tmp_path / "gt.json")
    assert code == 2 and "--image-dir" in out


def test_help_states_the_exit_statuses(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["data", "check", "--help"])
    assert "0 no problem found, 1 problems found, 2 input that cannot be read" in capsys.readouterr().out
