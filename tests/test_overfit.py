"""End to end: train the quick-start detector on a few shapes images until it fits them, then
evaluate, predict and visualise through the CLI. Checks the whole spine, not just the losses."""

import json

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from simpledet.cli import main
from simpledet.data.shapes import generate_shapes

from .helpers import QUICKSTART, shapes_overrides

ITERS = 160


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    data = root / "shapes"
    generate_shapes(data, num_train=8, num_val=4, seed=1)
    overrides = shapes_overrides(data, val_split="train") + [
        f"train.max_iter={ITERS}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10",
        "train.warmup_iters=20", f"train.steps=({ITERS * 3 // 4},)", f"train.checkpoint_every={ITERS}"]
    out = root / "run"
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return root, data, out, overrides


def test_training_log_and_checkpoint(trained):
    _, _, out, _ = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == ITERS
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    assert (out / "model_final.safetensors").is_file() and (out / "config.json").is_file()
    meta = json.loads((out / "model_final.json").read_text())
    assert meta["iteration"] == ITERS and meta["categories"] == ["circle", "square", "triangle", "cross"]


def test_eval_reaches_ap50_and_matches_pycocotools(trained, capsys):
    root, data, out, overrides = trained
    eval_dir = root / "eval"
    assert main(["eval", str(QUICKSTART), "--weights", str(out / "model_final.safetensors"),
                 "--out", str(eval_dir), *overrides]) == 0
    printed = capsys.readouterr().out
    assert "Average Precision" in printed and "triangle" in printed
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
    assert metrics["AP50"] >= 0.9, metrics

    # the same detections.json, scored by pycocotools itself
    gt = COCO(str(data / "annotations" / "train.json"))
    dt = gt.loadRes(str(eval_dir / "detections.json"))
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert abs(ev.stats[0] - metrics["AP"]) < 1e-6 and abs(ev.stats[1] - metrics["AP50"]) < 1e-6


def test_predict_writes_records_and_pictures(trained):
    root, data, out, _ = trained
    images = sorted((data / "val").glob("*.png"))[:2]
    preds, vis = root / "preds.json", root / "vis"
    assert main(["predict", str(QUICKSTART), "--weights", str(out / "model_final.safetensors"),
                 *map(str, images), "--out", str(preds), "--vis", str(vis), "--score-thresh", "0.5"]) == 0
    records = json.loads(preds.read_text())
    assert records, "a fitted model finds shapes in new images"
    for r in records:
        assert set(r) == {"file_name", "category_id", "bbox", "score"}
        assert r["category_id"] in (1, 2, 3, 4) and r["score"] >= 0.5
        x, y, w, h = r["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 160.5 and y + h <= 160.5
    assert sorted(p.name for p in vis.iterdir()) == sorted(p.stem + ".png" for p in images)


def test_predict_without_config_uses_the_checkpoints(trained):
    root, data, out, _ = trained
    image = sorted((data / "val").glob("*.png"))[0]
    preds = root / "preds_noconfig.json"
    assert main(["predict", "--weights", str(out / "model_final.safetensors"), str(image), "--out", str(preds),
                 "--score-thresh", "0.5"]) == 0
    assert json.loads(preds.read_text())
