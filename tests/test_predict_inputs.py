"""`simpledet predict` on folders and glob patterns, in batches: the same records as one image at a
time, and a clear refusal when an input names no image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet import build_model
from simpledet.cli import main
from simpledet.cli.predict import expand_inputs
from simpledet.engine.checkpoint import save_weights

from .helpers import QUICKSTART, small_config


@pytest.fixture(scope="module")
def images(shapes_dir, tmp_path_factory) -> Path:
    """Three shapes images in a folder, one cut to a wider canvas than the others, beside a file
    that is not an image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("inputs")
    for path in sorted((shapes_dir / "val").glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    first = sorted(folder.glob("*.png"))[0]
    with Image.open(first) as image:  # a batch-mate on another canvas would pad it: batched apart
        image.crop((0, 0, image.width, image.height * 5 // 8)).save(first)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def weights(shapes_dir, tmp_path_factory) -> Path:
    """Random weights: their detections are as good as any for comparing two ways of running."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.safetensors"
    save_weights(build_model(small_config(shapes_dir)), path)
    return path


def _predict(capsys, weights: Path, out: Path, *inputs, batch_size: int = 4) -> tuple[int, str, list[dict]]:
    code = main(["predict", str(QUICKSTART), "--weights", str(weights), *map(str, inputs), "--out", str(out),
                 "--batch-size", str(batch_size)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err, json.loads(out.read_text()) if code == 0 else []


def _assert_same_records(got: list[dict], expected: list[dict]) -> None:
    """The same images in the same order, and per image the same detections up to the last bits
    that batching can change in a convolution's sums. Random weights give near-equal scores, whose
    order those bits may swap, so detections are paired by value, not by position."""
    assert len(got) == len(expected) > 0
    assert [r["file_name"] for r in got] == [r["file_name"] for r in expected]

    def rows(records: list[dict], file_name: str) -> np.ndarray:  # category, x, y, w, h, score
        return np.array([[r["category_id"], *r["bbox"], r["score"]] for r in records if r["file_name"] == file_name])

    tolerance = np.array([0, 2e-3, 2e-3, 2e-3, 2e-3, 2e-5])
    for file_name in dict.fromkeys(r["file_name"] for r in expected):
        mine, theirs = rows(got, file_name), rows(expected, file_name)
        unpaired = np.ones(len(theirs), dtype=bool)
        for row in mine:
            close = unpaired & (np.abs(theirs - row) <= tolerance).all(axis=1)
            assert close.any(), f"{file_name}: no counterpart for {row}"
            unpaired[np.argmax(close)] = False


def test_expand_inputs(images, tmp_path) -> None:
    pngs = sorted(images.glob("*.png"))
    assert expand_inputs([str(images)]) == pngs  # the folder's images, sorted; notes.txt left out
    assert expand_inputs([str(images / "00000[21]*")]) == pngs[1:3]
    assert expand_inputs([str(images / "*.txt"), str(pngs[0])]) == [images / "notes.txt", pngs[0]]
    # a plain file is kept even when missing (reported when read, the others go on), and in place
    assert expand_inputs([str(tmp_path / "gone.png"), str(images)]) == [tmp_path / "gone.png", *pngs]
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    shutil.copy(pngs[0], nested / "x.png")
    assert expand_inputs([str(tmp_path / "**" / "*.png")]) == [nested / "x.png"]


def test_folder_glob_and_batches_match_one_by_one(capsys, tmp_path, images, weights) -> None:
    pngs = sorted(images.glob("*.png"))
    code, _, one_by_one = _predict(capsys, weights, tmp_path / "single.json", *pngs, batch_size=1)
    assert code == 0
    assert [r["file_name"] for r in one_by_one] == sorted(r["file_name"] for r in one_by_one)
    assert {r["file_name"] for r in one_by_one} == {str(p) for p in pngs}
    code, _, from_folder = _predict(capsys, weights, tmp_path / "folder.json", images, batch_size=2)
    assert code == 0
    _assert_same_records(from_folder, one_by_one)  # batches of 2 and 1
    code, _, from_glob = _predict(capsys, weights, tmp_path / "glob.json", images / "*.png", batch_size=4)
    assert code == 0
    _assert_same_records(from_glob, one_by_one)  # one batch of 3


def test_nothing_found_is_refused(capsys, tmp_path, images, weights) -> None:
    pattern = str(tmp_path / "nowhere" / "*.jpg")
    code, err, _ = _predict(capsys, weights, tmp_path / "p.json", images, pattern)
    assert code == 2 and pattern in err and "no file matches" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err, _ = _predict(capsys, weights, tmp_path / "p.json", empty)
    assert code == 2 and str(empty) in err and "no image files" in err
    code, err, _ = _predict(capsys, weights, tmp_path / "p.json", images, batch_size=0)
    assert code == 2 and "--batch-size" in err
    assert not (tmp_path / "p.json").exists()
