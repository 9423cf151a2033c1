"""Tests for COCO evaluation: agreement with pycocotools, conversions, edge cases."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet.engine.evaluator import (
    STAT_NAMES,
    EvalResult,
    detections_to_coco,
    evaluate_detections,
    format_results,
    write_metrics,
)
from simpledet.errors import UserError

# Non-contiguous ids, including 0; "dog" only has a crowd box, so it has no AP.
CATEGORIES = [{"id": 0, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]


def _ann(ann_id: int, image_id: int, cat_id: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": cat_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": crowd}  # fmt: skip


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def tiny_gt(tmp_path: Path) -> Path:
    images = [{"id": i, "width": 200, "height": 150, "file_name": f"{i}.jpg"} for i in (1, 2, 3)]
    anns = [
        _ann(1, 1, 0, [10, 10, 20, 40]),
        _ann(2, 1, 3, [50, 60, 100, 50]),
        _ann(3, 2, 0, [5, 5, 60, 80]),
        _ann(4, 2, 7, [100, 20, 80, 100], crowd=1),
    ]  # image 3 has no annotations
    return _write(tmp_path / "gt.json", {"images": images, "categories": CATEGORIES, "annotations": anns})


def _perfect(gt_file: Path) -> list[dict]:
    gt = json.loads(gt_file.read_text())
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]  # fmt: skip


def test_perfect_detections_give_ap_one(tiny_gt: Path) -> None:
    # The detection on the crowd box matches an ignored GT: COCO counts it neither as TP nor FP.
    result = evaluate_detections(tiny_gt, _perfect(tiny_gt))
    for name in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert result.stats[name] == pytest.approx(1.0)
    assert result.stats["APl"] == -1.0  # no large (> 96**2) GT at all
    assert result.num_images == 3
    per_cat = dict(result.per_category)
    assert per_cat["person"] == pytest.approx(1.0) and per_cat["car"] == pytest.approx(1.0)
    assert math.isnan(per_cat["dog"])  # crowd-only category has no AP


def _random_case(tmp_path: Path) -> tuple[Path, list[dict]]:
    rng = np.random.default_rng(0)
    images, anns, dets = [], [], []
    for image_id in range(1, 21):
        images.append({"id": image_id, "width": 256, "height": 256})
        for _ in range(rng.integers(0, 5)):  # ~50 GT, some images empty
            w, h = rng.uniform(6, 180, size=2)
            x, y = rng.uniform(0, 256 - w), rng.uniform(0, 256 - h)
            cat = int(rng.choice([0, 3, 7]))
            anns.append(_ann(len(anns) + 1, image_id, cat, [x, y, w, h], crowd=int(rng.random() < 0.05)))
            for _ in range(rng.integers(1, 4)):  # jittered copies: TPs at various IoUs and duplicates
                jit = [x, y, w, h] + rng.normal(0, 0.08, size=4) * [w, h, w, h]
                dets.append({"image_id": image_id, "category_id": cat, "bbox": jit.round(4).tolist(),
                             "score": float(rng.random())})  # fmt: skip
        for _ in range(rng.integers(2, 8)):  # false positives, any category
            w, h = rng.uniform(4, 120, size=2)
            x, y = rng.uniform(0, 256 - w), rng.uniform(0, 256 - h)
            dets.append({"image_id": image_id, "category_id": int(rng.choice([0, 3, 7])),
                         "bbox": [x, y, w, h], "score": float(rng.random())})  # fmt: skip
    assert 30 <= len(anns) <= 70 and 150 <= len(dets) <= 250
    gt = {"images": images, "categories": CATEGORIES, "annotations": anns}
    return _write(tmp_path / "random_gt.json", gt), dets


def _pycocotools(gt_file: Path, dets: list[dict]) -> tuple[np.ndarray, np.ndarray, str]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO(str(gt_file))
        coco_eval = COCOeval(gt, gt.loadRes([dict(d) for d in dets]), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return np.asarray(coco_eval.stats), coco_eval.eval["precision"], out.getvalue()


def test_matches_pycocotools(tmp_path: Path) -> None:
    gt_file, dets = _random_case(tmp_path)
    ours = evaluate_detections(gt_file, dets)
    stats, precision, printed = _pycocotools(gt_file, dets)
    np.testing.assert_allclose([ours.stats[n] for n in STAT_NAMES], stats, atol=1e-6, rtol=0)
    assert 0.05 < ours.stats["AP"] < 0.95  # a real mix of hits and misses, not a trivial case
    for k, (_, ap) in enumerate(ours.per_category):
        values = precision[:, :, k, 0, -1]
        assert ap == pytest.approx(values[values > -1].mean(), abs=1e-6)
    # The stat lines are laid out exactly like pycocotools' summarize().
    reference = [line for line in printed.splitlines() if line.startswith(" Average")]
    assert format_results(ours).splitlines()[:12] == reference


def test_detections_to_coco_hand_case() -> None:
    outputs = [
        {"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.5, 1.25, 4.5, 2.25]]),
         "labels": torch.tensor([0, 2]), "scores": torch.tensor([0.5, 0.25])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)},
    ]  # fmt: skip
    records = detections_to_coco(outputs, [42, 43], {0: 0, 1: 3, 2: 7})
    assert records == [
        {"image_id": 42, "category_id": 0, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5},
        {"image_id": 42, "category_id": 7, "bbox": [0.5, 1.25, 4.0, 1.0], "score": 0.25},
    ]
    assert all(type(v) is float for r in records for v in r["bbox"])
    with pytest.raises(UserError, match="no category id"):
        detections_to_coco(outputs[:1], [42], {0: 0})


def test_per_category_table_names_each_category(tiny_gt: Path) -> None:
    text = format_results(evaluate_detections(tiny_gt, _perfect(tiny_gt)))
    for cat in CATEGORIES:
        assert cat["name"] in text
    assert "person   1.000" in text  # a fraction, as the COCO rows print it


def test_empty_detections(tiny_gt: Path, tmp_path: Path) -> None:
    result = evaluate_detections(tiny_gt, [])
    # GT exists but nothing matched -> 0; no GT in that area range -> -1.
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0
    assert result.stats["APl"] == -1.0
    assert math.isnan(dict(result.per_category)["dog"])
    images_only = {"images": [{"id": 1, "width": 10, "height": 10}], "categories": CATEGORIES}
    result = evaluate_detections(_write(tmp_path / "images_only.json", images_only), [])
    assert all(v == -1.0 for v in result.stats.values())
    assert format_results(result)  # renders without GT too


def test_user_errors(tiny_gt: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        evaluate_detections(tmp_path / "missing.json", [])
    bad = [{"image_id": 99, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 1.0}]
    with pytest.raises(UserError, match="image ids"):
        evaluate_detections(tiny_gt, bad)
    no_box = [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 1.0},
              {"image_id": 1, "category_id": 0, "bbox": [0, 0, 1], "score": 1.0}]
    with pytest.raises(UserError, match="detection #1 is not a COCO box result"):
        evaluate_detections(tiny_gt, no_box)
    assert gc.isenabled()  # scoring pauses the cyclic collector, and restores it even on errors


def test_caller_records_left_unchanged(tiny_gt: Path) -> None:
    records = _perfect(tiny_gt)
    before = json.dumps(records)
    evaluate_detections(tiny_gt, records)
    assert json.dumps(records) == before


def test_write_metrics(tmp_path: Path) -> None:
    stats = {name: 0.5 for name in STAT_NAMES}
    result = EvalResult(stats=stats, per_category=[("person", 0.25), ("dog", math.nan)], num_images=3)
    path = tmp_path / "out" / "metrics.json"
    write_metrics(path, result)
    data = json.loads(path.read_text())
    assert set(data) == {*STAT_NAMES, "per_class"}
    assert data["per_class"] == {"person": 0.25, "dog": None}
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
