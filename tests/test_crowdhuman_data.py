"""CrowdHuman .odgt reading: full-body boxes as persons, 'mask' boxes and extra.ignore as crowd
(ignore) boxes, image sizes, the config's format=crowdhuman, `data convert crowdhuman`, bad lines."""

import json
from pathlib import Path

import pytest
from PIL import Image

from simpledet.cli import main
from simpledet.config import DatasetConfig
from simpledet.data.coco import load_coco_json
from simpledet.data.crowdhuman import read_crowdhuman
from simpledet.data.datasets import open_dataset
from simpledet.data.records import Problems
from simpledet.errors import UserError


def _box(tag: str, fbox: list, ignore: int | None = None) -> dict:
    box = {"tag": tag, "fbox": fbox, "vbox": fbox, "hbox": [fbox[0], fbox[1], 5, 5], "head_attr": {"ignore": 0}}
    if ignore is not None:
        box["extra"] = {"box_id": 0, "ignore": ignore}
    return box


LINES = [
    {"ID": "284193,faa9000f2678b5e", "gtboxes": [
        _box("person", [4, 5, 20, 40], ignore=0),
        _box("mask", [30, 2, 25, 30], ignore=1),
        _box("person", [40, 10, 10, 30], ignore=1),  # a person marked ignore: a region too
        _box("person", [1, 1, 0, 30]),  # zero width: skipped, as SimpleDet skips it
    ]},
    {"ID": "273271,c9db000d5146c15", "width": 300, "height": 200, "gtboxes": [_box("person", [-3.5, 10.25, 50, 80])]},
]


@pytest.fixture
def odgt(tmp_path: Path) -> Path:
    images = tmp_path / "Images"
    images.mkdir()
    Image.new("RGB", (64, 48)).save(images / f"{LINES[0]['ID']}.jpg")  # the second line gives its size
    path = tmp_path / "annotation_train.odgt"
    path.write_text("".join(json.dumps(line) + "\n" for line in LINES) + "\n")  # a blank last line is fine
    return path


def test_reads_full_boxes_ignore_regions_and_sizes(odgt: Path) -> None:
    records = read_crowdhuman(odgt, odgt.parent / "Images")
    coco = records.coco
    assert coco["categories"] == [{"id": 1, "name": "person"}]
    assert coco["images"] == [
        {"id": 1, "file_name": "284193,faa9000f2678b5e.jpg", "width": 64, "height": 48},  # the header's size
        {"id": 2, "file_name": "273271,c9db000d5146c15.jpg", "width": 300, "height": 200},  # the line's
    ]
    got = [(a["image_id"], a["bbox"], a["iscrowd"], a["area"]) for a in coco["annotations"]]
    assert got == [(1, [4.0, 5.0, 20.0, 40.0], 0, 800.0), (1, [30.0, 2.0, 25.0, 30.0], 1, 750.0),
                   (1, [40.0, 10.0, 10.0, 30.0], 1, 300.0), (2, [-3.5, 10.25, 50.0, 80.0], 0, 4000.0)]
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3, 4]
    assert records.image_where[2] == f"{odgt}:2" and records.annotation_where[3] == f"{odgt}:1: gtboxes[2]"


def test_config_format_crowdhuman_keeps_ignore_regions_apart(odgt: Path) -> None:
    split = DatasetConfig(ann_file=str(odgt), image_dir=str(odgt.parent / "Images"), format="crowdhuman")
    dataset = open_dataset(split, train=True)
    assert dataset.ground_truth == read_crowdhuman(odgt, odgt.parent / "Images").coco
    image, target = dataset[0]
    assert tuple(image.shape) == (3, 48, 64)
    assert target["boxes"].tolist() == [[4.0, 5.0, 24.0, 45.0]]  # the two ignore regions are not targets
    assert target["labels"].tolist() == [1]
    assert "ignore_boxes" not in target
    # for an RPN with ignore_iof, the regions ride along, flipped with the image's copy
    with_regions = open_dataset(split, train=True, flip_copies=True, with_ignore_regions=True)
    assert with_regions[0][1]["ignore_boxes"].tolist() == [[30.0, 2.0, 55.0, 32.0], [40.0, 10.0, 50.0, 40.0]]
    assert with_regions[2][1]["ignore_boxes"].tolist() == [[9.0, 2.0, 34.0, 32.0], [14.0, 10.0, 24.0, 40.0]]
    with pytest.raises(UserError, match=r"data.train.image_dir: set it to the folder of its images"):
        open_dataset(DatasetConfig(ann_file=str(odgt), format="crowdhuman"), train=True)


def test_convert_cli_writes_coco_with_crowd_boxes(odgt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "train.json"
    assert main(["data", "convert", "crowdhuman", str(odgt), "--images", str(odgt.parent / "Images"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 images, 2 boxes, 2 ignore regions, 1 categories (person)" in printed
    assert load_coco_json(out) == read_crowdhuman(odgt, odgt.parent / "Images").coco


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"odgt:2: not valid JSON"),
    ('["a list"]', r"odgt:2: expected a JSON object"),
    ('{"gtboxes": []}', r"odgt:2: 'ID' must be a non-empty string"),
    ('{"ID": "a", "width": 10, "height": 10, "gtboxes": {}}', r"odgt:2: a: 'gtboxes' must be a list"),
    ('{"ID": "a", "width": 10, "height": 10, "gtboxes": [{"tag": "person", "fbox": [1, 2, 3]}]}',
     r"odgt:2: a: gtboxes\[0\]: 'fbox' must be 4 numbers"),
    ('{"ID": "a", "width": 10, "height": 10, "gtboxes": [{"tag": 1, "fbox": [1, 2, 3, 4]}]}',
     r"odgt:2: a: gtboxes\[0\]: 'tag' must be a string"),
    ('{"ID": "a", "width": 10, "height": 0, "gtboxes": []}', r"odgt:2: a: 'width' and 'height' must be positive"),
    ('{"ID": "missing", "gtboxes": []}', r"odgt:2: missing: cannot read the image .*missing.jpg \(not found\)"),
])
def test_bad_line_is_one_error_naming_file_and_line(tmp_path: Path, capsys, line: str, message: str) -> None:
    (tmp_path / "Images").mkdir()
    odgt = tmp_path / "bad.odgt"
    odgt.write_text('{"ID": "ok", "width": 10, "height": 10, "gtboxes": []}\n' + line + "\n")
    with pytest.raises(UserError, match=message):
        read_crowdhuman(odgt, tmp_path / "Images")
    # the CLI: exit status 2, the message, no traceback
    assert main(["data", "convert", "crowdhuman", str(odgt), "--images", str(tmp_path / "Images"),
                 "--out", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.odgt:2" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()
    # collecting (`data check`): the bad line is reported and skipped, the good one kept
    problems = Problems(collect=True)
    assert len(read_crowdhuman(odgt, tmp_path / "Images", problems).coco["images"]) == 1
    assert len(problems.found) == 1 and problems.found[0].where.startswith(f"{odgt}:2")


def test_missing_files_and_repeated_ids(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nothing.odgt: cannot read CrowdHuman annotation file \(not found\)"):
        read_crowdhuman(tmp_path / "nothing.odgt", tmp_path)
    odgt = tmp_path / "a.odgt"
    line = json.dumps({"ID": "x", "width": 10, "height": 10, "gtboxes": [_box("person", [1, 1, 2, 2])]})
    odgt.write_text(f"{line}\n{line}\n")
    with pytest.raises(UserError, match=r"Images: image folder not found"):
        read_crowdhuman(odgt, tmp_path / "Images")
    problems = Problems(collect=True)
    records = read_crowdhuman(odgt, tmp_path, problems)
    assert len(records.coco["images"]) == 1 and len(records.coco["annotations"]) == 1  # read once
    assert [str(p) for p in problems.found] == [f"{odgt}:2: image 'x' is listed again (first on line 1); "
                                                "it is read once"]
