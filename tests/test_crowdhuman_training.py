"""Training on CrowdHuman data end to end: the .odgt files read directly, ignore regions carried
to the RPN (rpn.ignore_iof), and the evaluation during training choosing the best model by MR^-2,
a metric that improves downwards."""

import json
from pathlib import Path

import pytest

from simpledet.cli import main
from simpledet.engine.trainer import improves, metric_names
from simpledet.errors import UserError

from .helpers import QUICKSTART, shapes_as_odgt, shapes_overrides, small_config


def test_mr_improves_downwards_and_other_metrics_upwards() -> None:
    assert improves("MR", 0.4, 0.5) and not improves("MR", 0.5, 0.4)
    assert improves("AP", 0.5, 0.4) and not improves("AP", 0.4, 0.4)


def test_training_with_ignore_regions_keeps_the_best_by_miss_rate(shapes_dir: Path, tmp_path: Path) -> None:
    train_odgt, train_images = shapes_as_odgt(shapes_dir, "train", tmp_path, ignore_every=3)
    val_odgt, val_images = shapes_as_odgt(shapes_dir, "val", tmp_path)
    config = tmp_path / "crowd.py"  # the quick start as a one-class CrowdHuman model, as SimpleDet's configs
    config.write_text(
        "import dataclasses\n"
        "from simpledet.config import load_config\n"
        "from simpledet.modeling.detectors.crowdhuman import CrowdHumanFasterRCNNConfig\n"
        f"config = load_config({str(QUICKSTART)!r})\n"
        "parts = {f.name: getattr(config.model, f.name) for f in dataclasses.fields(config.model)}\n"
        "config.model = CrowdHumanFasterRCNNConfig(**parts)\n"
        "config.model.num_classes = 1\n"
        "config.model.rpn.ignore_iof = 0.3\n")
    overrides = shapes_overrides(shapes_dir) + [
        f"data.train.ann_file={train_odgt}", f"data.train.image_dir={train_images}", "data.train.format=crowdhuman",
        f"data.val.ann_file={val_odgt}", f"data.val.image_dir={val_images}", "data.val.format=crowdhuman",
        "train.max_iter=4", "train.batch_size=2", "train.checkpoint_every=4", "train.eval_every=2",
        "train.best_metric=MR", "model.roi_heads.score_thresh=0.0"]
    cfg = small_config(shapes_dir, *overrides[len(shapes_overrides(shapes_dir)):], config=config)
    assert metric_names(cfg) == ("AP", "MR") and cfg.model.trains_on_ignore_regions
    with pytest.raises(UserError, match="train.best_metric: unknown metric 'AP50'; choose one of AP, MR"):
        from simpledet.engine.trainer import check_loop_settings

        cfg.train.best_metric = "AP50"
        check_loop_settings(cfg.train, metric_names(cfg))

    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), *overrides]) == 0
    evals = [r["eval"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval" in r]
    assert len(evals) == 2 and all(set(e) == {"AP", "MR"} for e in evals)
    meta = json.loads((out / "model_best.json").read_text())  # what the best weights record beside them
    best = min(range(2), key=lambda i: (evals[i]["MR"], i))  # the first of equal ones stays best
    assert meta["metric"] == "MR" and float(meta["value"]) == pytest.approx(evals[best]["MR"])
    assert int(meta["iteration"]) == 2 * (best + 1)
