"""RPN-only models (SimpleDet's rpn_*.py configs and rpn_test.py): proposals from the RPN alone,
scored by class-agnostic proposal recall, checked against hand-computed values, and a small RPN
that trains on shapes, evaluates during training and writes proposals.json."""

import json

import pytest
import torch

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.engine.proposal_recall import AR_NAMES, evaluate_proposals

from .conftest import REPO
from .helpers import shapes_overrides

QUICK_RPN = REPO / "configs/quickstart/rpn_r18_fpn_shapes.py"


def _ground_truth():
    images = [{"id": 1, "file_name": "a.png", "width": 200, "height": 200}]
    categories = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0,
                    "iscrowd": 0},
                   {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20.0, 20.0, 10.0, 10.0], "area": 100.0,
                    "iscrowd": 0}]
    return {"images": images, "annotations": annotations, "categories": categories}


def test_recall_by_hand():
    """Object 2 found exactly and ranked first; object 1 found at IoU 0.72 (72 of 100 px: recalled
    at the thresholds 0.50..0.70, 5 of 10) but ranked 152nd, behind 150 boxes that miss. Recall is
    class-agnostic: the proposals' category is not the objects'."""
    proposals = [{"image_id": 1, "category_id": 1, "bbox": [20.0, 20.0, 10.0, 10.0], "score": 1.0}]
    proposals += [{"image_id": 1, "category_id": 1, "bbox": [100.0 + i % 10, 100.0, 30.0, 30.0],
                   "score": 0.9 - i * 0.001} for i in range(150)]
    proposals.append({"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 7.2], "score": 0.1})
    stats = evaluate_proposals(_ground_truth(), proposals).stats
    assert list(stats) == list(AR_NAMES)
    assert stats["AR@100"] == pytest.approx((1.0 + 0.0) / 2)
    assert stats["AR@300"] == pytest.approx((1.0 + 0.5) / 2)
    assert stats["AR@1000"] == pytest.approx(0.75)
    assert stats["ARs@1000"] == pytest.approx(0.75)  # both objects are 100 px^2: small
    assert stats["ARm@1000"] == -1 and stats["ARl@1000"] == -1


def test_rpn_configs_build_proposal_models():
    for name in ("rpn_r50v1_fpn_1x", "rpn_r50v2c4_1x"):
        cfg = load_config(REPO / f"configs/{name}.py")
        assert cfg.model.proposals_only and cfg.train.best_metric == "AR@1000"
        with torch.device("meta"):
            model = cfg.model.build()
        assert not hasattr(model, "roi_heads")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    out = tmp_path_factory.mktemp("rpn") / "run"
    overrides = shapes_overrides(shapes_dir) + [
        "train.max_iter=30", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.warmup_iters=5", "train.checkpoint_every=30", "train.eval_every=30", "train.tensorboard=false"]
    assert main(["train", str(QUICK_RPN), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_rpn_trains_and_evaluates_during_training(trained):
    out, _ = trained
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    evals = [line["eval"] for line in lines if "eval" in line]
    assert evals and set(evals[-1]) == set(AR_NAMES)
    best = json.loads((out / "model_best.json").read_text())
    assert best["metric"] == "AR@1000" and best["value"] == evals[-1]["AR@1000"]


def test_eval_writes_proposals_and_their_recall(trained, shapes_dir, tmp_path, capsys):
    out, overrides = trained
    assert main(["eval", str(QUICK_RPN), "--weights", str(out / "model_final.safetensors"),
                 "--out", str(tmp_path), *overrides]) == 0
    assert "AR@1000" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    proposals = json.loads((tmp_path / "proposals.json").read_text())
    assert set(AR_NAMES) <= set(metrics) and 0 < metrics["AR@1000"] <= 1
    per_image = {}
    for p in proposals:
        per_image[p["image_id"]] = per_image.get(p["image_id"], 0) + 1
    assert max(per_image.values()) <= load_config(QUICK_RPN).model.rpn.post_nms_top_n_test
    # the written proposals score what metrics.json says
    ground_truth = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    assert evaluate_proposals(ground_truth, proposals).stats["AR@1000"] == pytest.approx(metrics["AR@1000"])
    model = build_model(load_config(QUICK_RPN, shapes_overrides(shapes_dir))).eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 96, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"])
    assert bool((det["labels"] == 1).all()) and bool((det["scores"][:-1] >= det["scores"][1:]).all())
