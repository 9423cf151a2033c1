"""The double-prediction R-CNN (SimpleDet's CrowdHuman DoublePred): set NMS on hand-made boxes and
against a plain-loop reference, the second targets and the EMD loss by hand, and the quick-start
model trained on shapes through the CLI, then scored by `eval` with CrowdHuman's AP and MR^-2."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.engine.checkpoint import save_weights
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.double_pred_head import (
    DoublePredRoIHeadsConfig,
    DoubleSampledRoIs,
    emd_loss,
    second_targets,
)
from simpledet.modeling.set_nms import set_nms
from simpledet.weights.mxnet_format import read_ndarray_file
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import shapes_as_odgt, shapes_overrides, small_config

QUICKSTART = REPO / "configs/quickstart/doublepred_r18_fpn_shapes.py"
FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"


def test_head_and_refine_match_simpledet_in_mxnet() -> None:
    """SimpleDet's DoublePredFPNBbox2fcHead get_output + get_refine_output at reduced width
    (tools/mxnet_crowdhuman_fixtures.py), its weights placed by the converter's rules: both
    predictions and both refined ones."""
    data = np.load(FIXTURES / "double_pred_head.npz")
    meta = json.loads(str(data["meta"]))
    arrays = {k.split(":", 1)[1]: v for k, v in read_ndarray_file(FIXTURES / "double_pred_head-0000.params").items()}
    heads = DoublePredRoIHeadsConfig(box_head=MLPHeadConfig(fc_dim=1024 // meta["div"], fc_bias=True), refine=True,
                                     refine_repeat=meta["repeat_time"]).build(meta["channels"], meta["num_class"] - 1)
    holder = torch.nn.Module()  # the converter's names: roi_heads.*
    holder.roi_heads = heads
    report = convert_arrays(arrays, {k: tuple(v.shape) for k, v in holder.state_dict().items()})
    assert not report.initialised and set(report.origin.values()) == set(arrays)
    holder.load_state_dict({k: torch.from_numpy(v) for k, v in report.state.items()})
    with torch.no_grad():
        first, second, refined = heads.eval().predict_both(torch.from_numpy(data["roi_feat"]))
    ours = [*first, *second, *refined[0], *refined[1]]
    names = ("cls_logit", "bbox_delta", "cls_sec_logit", "bbox_sec_delta",
             "refine_cls_logit", "refine_bbox_delta", "refine_cls_sec_logit", "refine_bbox_sec_delta")
    for got, name in zip(ours, names):
        expected = torch.from_numpy(data[name])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def _set_nms_reference(boxes: np.ndarray, scores: np.ndarray, sets: np.ndarray, thresh: float) -> list[int]:
    """SimpleDet's operator_py/nms.py set_nms, as a plain loop (areas without its +1)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = []
        for j in order:
            lt = np.maximum(boxes[i, :2], boxes[j, :2])
            rb = np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None))
            union = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[j, 2:] - boxes[j, :2]) - inter
            if inter / union <= thresh or sets[j] == sets[i]:
                rest.append(j)
        order = rest
    return keep


def test_set_nms_keeps_a_proposals_pair_and_follows_chains() -> None:
    boxes = torch.tensor([[0, 0, 10, 10],  # A, set 0
                          [1, 0, 11, 10],  # B, set 0: IoU 9/11 with A, same set: kept
                          [0, 1, 10, 11],  # C, set 1: IoU 9/11 with A: suppressed
                          [0, 3, 10, 13],  # D, set 2: IoU 7/13 with A, 8/12 with C (gone): 7/13 > 0.5
                          [0, 6, 10, 16]], dtype=torch.float)  # E, set 3: 4/16 with A, 7/13 with D
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    sets = torch.tensor([0, 0, 1, 2, 3])
    assert set_nms(boxes, scores, sets, 0.5).tolist() == [0, 1, 4]  # D suppressed by A; E then survives
    # at 0.6: C goes (A, 9/11); D overlaps C by 8/12 but C is gone, and A by 7/13 only: D stays, E too
    assert set_nms(boxes, scores, sets, 0.6).tolist() == [0, 1, 3, 4]
    assert set_nms(boxes, scores, torch.arange(5), 0.5).tolist() == [0, 4]  # plain NMS: B goes too
    assert set_nms(boxes[:0], scores[:0], sets[:0], 0.5).tolist() == []


def test_set_nms_matches_the_reference_loop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        xy = rng.uniform(0, 50, (60, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (60, 2))], axis=1).astype(np.float32)
        scores = rng.permutation(60).astype(np.float32)
        sets = np.repeat(np.arange(30), 2)  # pairs, as the head makes them
        got = set_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(sets), 0.5).tolist()
        assert got == _set_nms_reference(boxes, scores, sets, 0.5)


def test_second_targets_follow_simpledet() -> None:
    # one image, three ground-truth boxes (the third padding), four candidates: IoU (G, P)
    iou = torch.tensor([[[0.9, 0.6, 0.3, 0.7],
                         [0.6, 0.4, 0.2, 0.0],
                         [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    first_classes = torch.tensor([[3, 3, 0, 3]])  # the first match's class, 0 for background
    second, classes = second_targets(iou, valid, first_classes, fg_iou=0.5)
    assert second.tolist() == [[1, 1, 1, 1]]
    # second overlap >= 0.5: the first's class; below, or background first: 0
    assert classes.tolist() == [[3, 0, 0, 0]]
    # one ground truth only: no second
    second, classes = second_targets(iou[:, :1], valid[:, :1], first_classes, fg_iou=0.5)
    assert classes.tolist() == [[0, 0, 0, 0]] and second.max() == 0


def test_emd_loss_takes_the_better_pairing_by_hand() -> None:
    ln = np.log
    # two RoIs, one class; predictions (logits bg/fg, deltas bg 4 + fg 4)
    logits1 = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    logits2 = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    deltas1 = torch.tensor([[0.0] * 8, [0.0] * 4 + [0.5] * 4])
    deltas2 = torch.tensor([[0.0] * 4 + [1.0] * 4, [0.0] * 8])
    sampled = DoubleSampledRoIs(boxes=[], classes=torch.tensor([1, 1]),
                                box_targets=torch.tensor([[0.0] * 4, [0.5] * 4]), matched_gt=torch.tensor([0, 0]),
                                classes2=torch.tensor([1, 0]), box_targets2=torch.tensor([[1.0] * 4, [0.0] * 4]))
    fg2, bg2 = ln(1 + np.exp(-2.0)), ln(1 + np.exp(2.0))  # CE of logits (0, 2) for fg, bg
    fg1, bg1 = ln(1 + np.exp(1.0)), ln(1 + np.exp(-1.0))  # CE of logits (1, 0) for fg, bg
    # RoI 1: straight: fg2 + fg2 (both boxes exact); swapped: fg2 + fg2 + 4 x smooth-L1(1) x 2 = + 4
    roi1 = min(2 * fg2, 2 * fg2 + 4.0)
    # RoI 2: straight: first->(fg, 0.5) exact: fg2; second->bg: bg1
    #        swapped: first->bg: bg2; second->(fg, 0.5): fg1 + 4 x smooth-L1(0.5) = fg1 + 4 x 0.125
    roi2 = min(fg2 + bg1, bg2 + fg1 + 0.5)
    got = emd_loss((logits1, deltas1), (logits2, deltas2), sampled, beta=1.0)
    assert got.item() == pytest.approx((roi1 + roi2) / 2, rel=1e-6)


@pytest.fixture(scope="module")
def trained(shapes_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("doublepred") / "run"
    iters = 24
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out


def test_trains_on_shapes_and_predicts(trained: Path, shapes_dir: Path) -> None:
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses)) and {"loss_emd", "loss_refine_emd"} <= set(records[-1])
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    model = build_model(small_config(shapes_dir, config=QUICKSTART))
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) <= 100
    assert bool((det["scores"] > 0.05).all()) and bool((det["labels"] >= 1).all() and (det["labels"] <= 4).all())


def test_eval_reports_crowdhuman_ap_and_mr(shapes_dir: Path, tmp_path: Path) -> None:
    # the shapes val split as CrowdHuman .odgt (every object a person), scored by a one-class
    # CrowdHuman version of the quick-start model (untrained: only the report's form is checked)
    odgt, images = shapes_as_odgt(shapes_dir, "val", tmp_path)
    config = tmp_path / "crowd.py"
    config.write_text(
        "import dataclasses\n"
        "from simpledet.config import load_config\n"
        "from simpledet.modeling.detectors.crowdhuman import CrowdHumanDoublePredConfig\n"
        f"config = load_config({str(QUICKSTART)!r})\n"
        "parts = {f.name: getattr(config.model, f.name) for f in dataclasses.fields(config.model)}\n"
        "config.model = CrowdHumanDoublePredConfig(**parts)\n"
        "config.model.num_classes = 1\n")
    overrides = shapes_overrides(shapes_dir) + [f"data.val.ann_file={odgt}", f"data.val.image_dir={images}",
                                                "data.val.format=crowdhuman"]
    out = tmp_path / "eval"
    weights = tmp_path / "untrained.safetensors"
    torch.manual_seed(0)
    save_weights(build_model(load_config(config, overrides)), weights)
    assert main(["eval", str(config), "--weights", str(weights), "--out", str(out), *overrides]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0 and 0.0 <= metrics["MR"] <= 1.0 and "AP50" not in metrics
