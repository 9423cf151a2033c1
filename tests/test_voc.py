"""Pascal VOC: hand-written XML read to known pixel boxes, difficult objects as ignore regions,
class ids shared by the splits, the converter, the COCO -> VOC -> COCO round trip, bad input."""

import json
from pathlib import Path

import pytest
from PIL import Image

from simpledet.cli import main
from simpledet.config import DatasetConfig
from simpledet.data.coco import CocoDetection, load_coco_json
from simpledet.data.datasets import open_dataset
from simpledet.data.voc import read_voc, write_voc
from simpledet.engine.evaluator import evaluate_detections
from simpledet.errors import UserError


def _object(name: str, corners: tuple, difficult: int = 0) -> str:
    xmin, ymin, xmax, ymax = corners
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def _xml(file_name: str, size: tuple | None, objects: list[str]) -> str:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><filename>{file_name}</filename>{size_xml}{''.join(objects)}</annotation>"


def make_voc(root: Path, images: dict[str, tuple], xmls: dict[str, str], splits: dict[str, list[str]]) -> Path:
    """images: file name -> (width, height); xmls: id -> XML text; splits: name -> ids."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, size in images.items():
        Image.new("RGB", size, (90, 120, 150)).save(root / "JPEGImages" / name)
    for stem, text in xmls.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """a: 64x48 with a dog covering the whole image and a difficult person; b: a PNG whose XML
    has no <size> (40x30 from its header); c (val): a cat only."""
    return make_voc(tmp_path / "voc", {"a.jpg": (64, 48), "b.png": (40, 30), "c.jpg": (50, 50)}, {
        "a": _xml("a.jpg", (64, 48), [_object("dog", (1, 1, 64, 48)), _object("person", (11, 21, 30, 40), 1)]),
        "b": _xml("b.png", None, [_object("dog", (5, 6, 15, 26))]),
        "c": _xml("c.jpg", (50, 50), [_object("cat", (2, 3, 12, 13))]),
    }, {"train": ["a", "b"], "val": ["c"]})


def test_reads_pixel_boxes_sizes_and_difficult(voc_root: Path) -> None:
    records = read_voc(voc_root, "train")
    coco = records.coco
    assert records.image_dir == voc_root / "JPEGImages" and records.source == voc_root
    assert coco["images"] == [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                               {"id": 2, "file_name": "b.png", "width": 40, "height": 30}]
    # all names are VOC classes: VOC's 20 ids (cat 8, dog 12, person 15), whatever a split holds
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert len(names) == 20 and names[8] == "cat" and names[12] == "dog" and names[15] == "person"
    # x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax: (1, 1, 64, 48) is the whole 64x48 image
    assert [(a["image_id"], a["category_id"], a["bbox"], a["iscrowd"]) for a in coco["annotations"]] == [
        (1, 12, [0.0, 0.0, 64.0, 48.0], 0),
        (1, 15, [10.0, 20.0, 20.0, 20.0], 1),
        (2, 12, [4.0, 5.0, 11.0, 21.0], 0),
    ]
    assert [a["area"] for a in coco["annotations"]] == [64.0 * 48, 20.0 * 20, 11.0 * 21]
    assert records.annotation_where[2] == f"{voc_root / 'Annotations' / 'a.xml'}: object 2 (person)"


def test_custom_classes_sorted_and_the_same_for_every_split(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", {"a.jpg": (32, 32), "b.jpg": (32, 32)}, {
        "a": _xml("a.jpg", (32, 32), [_object("zebra", (1, 1, 9, 9)), _object("apple", (2, 2, 8, 8))]),
        "b": _xml("b.jpg", (32, 32), [_object("dog", (1, 1, 9, 9))]),
    }, {"train": ["a"], "val": ["b"]})
    train, val = read_voc(root, "train").coco, read_voc(root, "val").coco
    expected = [{"id": 1, "name": "apple"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "zebra"}]
    assert train["categories"] == val["categories"] == expected
    assert [a["category_id"] for a in train["annotations"]] == [3, 1]
    assert [a["category_id"] for a in val["annotations"]] == [2]


def test_open_dataset_trains_without_difficult_and_evaluates_with_them(voc_root: Path) -> None:
    split = DatasetConfig(ann_file=str(voc_root), format="voc", split="train", image_dir="ignored/for/voc")
    train = open_dataset(split, train=True)
    assert train.ann_file == voc_root and train.image_dir == voc_root / "JPEGImages"
    assert train.ground_truth == read_voc(voc_root, "train").coco
    image, target = train[0]
    assert tuple(image.shape) == (3, 48, 64)
    assert target["boxes"].tolist() == [[0.0, 0.0, 64.0, 48.0]]  # the difficult person is not a target
    assert target["labels"].tolist() == [12]
    with pytest.raises(UserError, match="masks"):
        open_dataset(split, with_masks=True)


def test_difficult_objects_are_ignored_by_evaluation(voc_root: Path) -> None:
    ground_truth = read_voc(voc_root, "train").coco
    exact = [{"image_id": 1, "category_id": 12, "bbox": [0.0, 0.0, 64.0, 48.0], "score": 0.9},
             {"image_id": 2, "category_id": 12, "bbox": [4.0, 5.0, 11.0, 21.0], "score": 0.8}]
    # VOC's rule: the difficult person counts neither missed (no detection) nor false (detected)
    on_difficult = {"image_id": 1, "category_id": 15, "bbox": [10.0, 20.0, 20.0, 20.0], "score": 0.95}
    for detections in (exact, exact + [on_difficult]):
        stats = evaluate_detections(ground_truth, detections, source=voc_root).stats
        assert stats["AP50"] == pytest.approx(1.0) and stats["AR100"] == pytest.approx(1.0)
    # the control: as an ordinary box the person is missed, and recall averages dog 1 and person 0
    ground_truth["annotations"][1]["iscrowd"] = 0
    assert evaluate_detections(ground_truth, exact, source=voc_root).stats["AR100"] == pytest.approx(0.5)


def test_convert_cli_writes_coco_that_loads(voc_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "train.json"
    assert main(["data", "convert", "voc", str(voc_root), "--split", "train", "--out", str(out)]) == 0
    assert str(voc_root / "JPEGImages") in capsys.readouterr().out
    assert load_coco_json(out) == read_voc(voc_root, "train").coco
    dataset = CocoDetection(out, voc_root / "JPEGImages", train=True)
    assert len(dataset) == 2 and dataset.category_names[11] == "dog"


def test_round_trip_coco_voc_coco_box_for_box(shapes_dir: Path, tmp_path: Path) -> None:
    coco = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    ids = write_voc(coco, shapes_dir / "val", tmp_path / "voc", "val", id_prefix="v")
    assert ids[0] == "v000000" and (tmp_path / "voc" / "JPEGImages" / "v000000.png").is_file()
    back = read_voc(tmp_path / "voc", "val").coco
    names = {c["id"]: c["name"] for c in coco["categories"]}
    names_back = {c["id"]: c["name"] for c in back["categories"]}
    assert [(im["width"], im["height"]) for im in back["images"]] == [(im["width"], im["height"])
                                                                     for im in coco["images"]]
    # the shapes' boxes are whole pixels: they come back exactly
    assert [(a["image_id"], names[a["category_id"]], a["bbox"]) for a in coco["annotations"]] == [
        (a["image_id"], names_back[a["category_id"]], a["bbox"]) for a in back["annotations"]]


def test_writer_rounds_to_whole_pixels_and_keeps_crowd_as_difficult(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "x.jpg")
    coco = {"images": [{"id": 7, "file_name": "x.jpg", "width": 40, "height": 30}],
            "categories": [{"id": 3, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2.4, 3.6, 10.2, 5.3]},
                            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1}]}
    write_voc(coco, tmp_path, tmp_path / "voc", "all")
    text = (tmp_path / "voc" / "Annotations" / "x.xml").read_text()
    # x1 2.4 -> xmin 3, y1 3.6 -> ymin 5, x2 12.6 -> xmax 13, y2 8.9 -> ymax 9
    assert "<xmin>3</xmin>" in text and "<ymin>5</ymin>" in text and "<xmax>13</xmax>" in text
    assert "<ymax>9</ymax>" in text and "<difficult>1</difficult>" in text
    back = read_voc(tmp_path / "voc", "all").coco["annotations"]
    assert back[0]["bbox"] == [2.0, 4.0, 11.0, 5.0] and back[1]["iscrowd"] == 1
    for a, b in zip(coco["annotations"], back):
        x, y, w, h = a["bbox"]
        for got, want in zip((b["bbox"][0], b["bbox"][1], b["bbox"][0] + b["bbox"][2], b["bbox"][1] + b["bbox"][3]),
                             (x, y, x + w, y + h)):
            assert abs(got - want) <= 0.5


@pytest.mark.parametrize("xml, message", [
    ("<annotation><object><name>dog</name>", "a.xml:1: malformed XML"),
    (_xml("a.jpg", (64, 48), [_object("dog", (1, 1, "", 9))]),
     "a.xml: object 1 (dog): <bndbox><xmax> must be a number"),
    (_xml("a.jpg", (64, 48), [_object("dog", (1, 1, 9, 9), difficult="maybe")]), "<difficult> must be 0 or 1"),
    (_xml("a.jpg", (64, 48), ["<object><bndbox/></object>"]), "a.xml: object 1: no <name>"),
    ("<images/>", "a.xml: not a VOC annotation"),
])
def test_bad_xml_is_one_error_naming_the_file(tmp_path: Path, capsys, xml: str, message: str) -> None:
    root = make_voc(tmp_path / "voc", {"a.jpg": (64, 48)}, {"a": xml}, {"train": ["a"]})
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_voc(root, "train")
    out = tmp_path / "out.json"
    assert main(["data", "convert", "voc", str(root), "--split", "train", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "a.xml" in err and "Traceback" not in err and not out.exists()


def test_missing_split_and_missing_annotation(voc_root: Path) -> None:
    with pytest.raises(UserError, match=r"test.txt: split file not found \(splits in .*: train, val\)"):
        read_voc(voc_root, "test")
    (voc_root / "ImageSets" / "Main" / "more.txt").write_text("a\nnope\n")
    with pytest.raises(UserError, match=r"more.txt:2: nope: annotation file .*nope.xml not found"):
        read_voc(voc_root, "more")
    with pytest.raises(UserError, match=r"data.val.split: set it"):
        open_dataset(DatasetConfig(ann_file=str(voc_root), format="voc"), key="data.val")
