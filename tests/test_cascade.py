"""Cascade R-CNN: each stage samples at its own IoU threshold; the whole thing trains."""

import json

import torch

from simpledet import build_model
from simpledet.cli import main
from simpledet.data.shapes import generate_shapes
from simpledet.modeling.heads.cascade_roi_heads import CascadeRoIHeads, CascadeRoIHeadsConfig
from simpledet.structures.image_sizes import ImageSizes

from .conftest import REPO
from .helpers import shapes_overrides, small_config

CASCADE = REPO / "configs/quickstart/cascade_r18_fpn_shapes.py"


def test_stages_sample_at_their_own_iou(shapes_dir):
    model = build_model(small_config(shapes_dir, config=CASCADE))
    heads = model.roi_heads
    assert isinstance(heads, CascadeRoIHeads) and len(heads.stages) == 3
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    # proposals shifted right: IoU 0.55, 0.65, 0.75 with the ground truth
    ious = torch.tensor([0.55, 0.65, 0.75])
    shift = 100 * (1 - ious) / (1 + ious)  # IoU of a box shifted by s: (100 - s) / (100 + s)
    proposals = torch.stack([shift, torch.zeros(3), 100 + shift, torch.full((3,), 100.0)], dim=1)
    targets = [{"boxes": gt, "labels": torch.tensor([2])}]
    expected = {0: [2, 2, 2], 1: [0, 2, 2], 2: [0, 0, 2]}  # class 2 = foreground, 0 = background
    for i, stage in enumerate(heads.stages):
        sampled = stage.sample_proposals([proposals], targets)
        by_box = {tuple(b.tolist()): int(c) for b, c in zip(sampled.boxes[0], sampled.classes)}
        got = [by_box[tuple(p.tolist())] for p in proposals]
        assert got == expected[i], f"stage {i + 1}"
        assert by_box[tuple(gt[0].tolist())] == 2  # the ground truth joins as a proposal


def test_cascade_box_std_and_loss_weights():
    heads = build_model(small_config(REPO / "tests", config=REPO / "configs/cascade_r50v1_fpn_1x.py")).roi_heads
    weights = [s.box_coder.weights for s in heads.stages]
    torch.testing.assert_close(torch.tensor(weights[2]), torch.tensor([1 / 0.033, 1 / 0.033, 1 / 0.067, 1 / 0.067]))
    assert heads.loss_weights == (1.0, 0.5, 0.25)
    assert [s.matcher.fg_iou for s in heads.stages] == [0.5, 0.6, 0.7]
    assert [s.matcher.bg_iou for s in heads.stages] == [0.5, 0.6, 0.7]


def test_a_cascade_config_saved_in_the_flat_layout_loads_as_the_stage_layout():
    """Configs saved with checkpoints before the cascade config held one stage config: every
    stage setting at the top and SimpleDet's box stds instead of box weights."""
    from simpledet.config import from_dict, to_dict

    current = CascadeRoIHeadsConfig()
    current.stage.batch_size_per_image = 64
    flat = {k: v for k, v in to_dict(current.stage).items() if k not in ("fg_iou", "bg_iou", "box_weights")}
    flat.update(_type=to_dict(current)["_type"], fg_ious=[0.5, 0.6, 0.7], loss_weights=[1.0, 0.5, 0.25],
                box_stds=[[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]])
    del flat["class_agnostic"]
    assert from_dict(flat) == current


def test_cascade_overfits_shapes(tmp_path):
    data = tmp_path / "shapes"
    generate_shapes(data, num_train=8, num_val=4, seed=1)
    iters = 120  # AP50 0.99 here; the test asks 0.9
    overrides = shapes_overrides(data, val_split="train") + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=20", f"train.steps=({iters * 3 // 4},)",
        f"train.checkpoint_every={iters}"]
    out = tmp_path / "run"
    assert main(["train", str(CASCADE), "--out", str(out), *overrides]) == 0
    losses = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_cls_stage1", "loss_box_stage3"} <= set(losses[-1])
    assert losses[-1]["loss"] < losses[0]["loss"]
    assert main(["eval", str(CASCADE), "--weights", str(out / "model_final.safetensors"),
                 "--out", str(tmp_path / "eval"), *overrides]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["AP50"] >= 0.9, metrics


def test_refine_clips_as_torchvision_does(shapes_dir):
    """A stage's refined boxes, clipped per image in one batch, equal clip_boxes_to_image's, for
    boxes pushed past every border (and a NaN delta, which stays NaN)."""
    from torchvision.ops import clip_boxes_to_image

    stage = build_model(small_config(shapes_dir, config=CASCADE)).roi_heads.stages[0]
    g = torch.Generator().manual_seed(0)
    proposals = [torch.rand(n, 2, generator=g).repeat(1, 2) * 150 + torch.tensor([0.0, 0, 30, 40]) for n in (40, 0, 25)]
    deltas = 3 * torch.randn(65, 8, generator=g)
    deltas[3, 0] = float("nan")
    sizes = [(120, 100), (90, 90), (140, 160)]
    ours = stage.refine(deltas, proposals, ImageSizes.of((160, 160), sizes))
    boxes = stage.box_coder.decode(deltas[:, :4], torch.cat(proposals))[:, 0]
    expected = [clip_boxes_to_image(b, s) for b, s in zip(boxes.split([40, 0, 25]), sizes)]
    assert [len(b) for b in ours] == [40, 0, 25]
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    clipped = torch.cat(ours)
    assert torch.isnan(clipped[3, 0]) and (clipped[:40, 2] == 100).any() and (clipped[:40, 0] == 0).any()
