"""RepPoints (SimpleDet's models/RepPoints): the point geometry and both assignments on SimpleDet's
own hand-made cases (point_ops.py's self-test), the neck, head, targets, losses and decoding against
what MXNet computed with SimpleDet's builder (tools/mxnet_reppoints_fixtures.py), training through
the CLI, and the config checks. The opt-in overfit test runs with SIMPLEDET_TEST_OVERFIT=1."""

import json
import math
import os
import re

import numpy as np
import pytest
import torch

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.errors import UserError
from simpledet.modeling.heads.reppoints_head import RepPointsHeadConfig
from simpledet.modeling.necks.reppoints_fpn import RepPointsFPNConfig
from simpledet.modeling.reppoints_targets import (
    Points,
    grid_points,
    iou_targets,
    point_targets,
    points_to_boxes,
)
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes
from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import fit_shapes_images, shapes_overrides, small_config

FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"
QUICKSTART = REPO / "configs" / "quickstart" / "reppoints_r18_fpn_shapes.py"
STRIDES = (8, 16, 32, 64, 128)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


def _gt(rows) -> PaddedGroundTruth:
    """SimpleDet's gt_bbox rows (x1, y1, x2, y2, class; class <= 0 is padding) for one image."""
    rows = torch.as_tensor(np.asarray(rows, np.float32))
    return PaddedGroundTruth(rows[None, :, :4], rows[None, :, 4] > 0, rows[None, :, 4].long().clamp(min=0))


# ---- SimpleDet's own cases (point_ops.py, `if __name__ == "__main__"`) ----

def test_grid_points_and_kernel_taps_are_simpledets():
    # _gen_points on a 2x3 map at stride 8: cell corners, row-major, with the stride
    expected = [[0, 0, 8], [8, 0, 8], [16, 0, 8], [0, 8, 8], [8, 8, 8], [16, 8, 8]]
    assert grid_points(2, 3, 8, torch.device("cpu")).tolist() == expected
    # _gen_offsets: the 3x3 kernel's taps as (dy, dx) pairs
    head = RepPointsHeadConfig(conv_channels=32, point_channels=8).build(32, 2)
    taps = [-1, -1, -1, 0, -1, 1, 0, -1, 0, 0, 0, 1, 1, -1, 1, 0, 1, 1]
    assert head.base_offset.flatten().tolist() == taps


def test_minmax_box_of_simpledets_case():
    """_points2bbox(arange(36).reshape(1, 18, 2, 1), "minmax", y_first=True) = [2 3; 0 1; 34 35; 32 33]."""
    head = RepPointsHeadConfig(conv_channels=32, point_channels=8, transform="minmax").build(32, 2)
    offsets = torch.arange(36.0).reshape(1, 18, 2, 1)
    at_origin = torch.zeros(2, 3)
    at_origin[:, 2] = 1  # stride 1 at (0, 0): the coordinates are the offsets
    pts = head.point_coordinates([offsets], Points([at_origin], at_origin))
    boxes = points_to_boxes(pts, "minmax")[0]  # (2 positions, 4)
    assert boxes.T.tolist() == [[2, 3], [0, 1], [34, 35], [32, 33]]
    assert points_to_boxes(pts, "partial_minmax")[0, 0].tolist() == [2, 0, 14, 12]  # the first 4 points


def test_moment_box_by_hand():
    # a 3x3 grid of points spaced 2 px around (10, 20): mean (10, 20), std sqrt(8/3) on both axes
    ys, xs = torch.meshgrid(torch.tensor([18.0, 20, 22]), torch.tensor([8.0, 10, 12]), indexing="ij")
    pts = torch.stack([xs.flatten(), ys.flatten()], -1)
    std = math.sqrt(8 / 3)
    box = points_to_boxes(pts, "moment", torch.tensor([math.log(2.0), 0.0]))
    torch.testing.assert_close(box, torch.tensor([10 - 2 * std, 20 - std, 10 + 2 * std, 20 + std]))


def test_point_assignment_of_simpledets_case():
    """_point_assign on strides 32 and 64 of a 64x128 image: each object takes the nearest point of
    the level its size picks; the one left without a point of its level stays unassigned."""
    points = torch.cat([grid_points(64 // s, 128 // s, s, torch.device("cpu")) for s in (32, 64)])
    gt = _gt([[63, 923, 123, 1800, 2], [200, 50, 600, 120, 3], [21, 456, 123, 712, 4],
              [325, 123, 523, 612, 5], [-1, -1, 5000, 5000, 6]])
    labels, boxes = point_targets(points, gt, scale=4, num_pos=1)
    assert labels[0].tolist() == [-1, -1, -1, -1, -1, -1, 4, 3, -1, 6]
    expected = [[0] * 4] * 6 + [[21, 456, 123, 712], [200, 50, 600, 120], [0] * 4, [-1, -1, 5000, 5000]]
    assert boxes[0].tolist() == expected


def test_iou_assignment_of_simpledets_case():
    proposals = torch.tensor([[[45.0, 23, 452, 45], [12, 798, 45, 902], [103, 563, 345, 609], [34, 452, 123, 623],
                               [12, 23, 43, 134], [341, 78, 587, 102]]])
    gt = _gt([[63, 923, 123, 1800, 2], [200, 50, 600, 120, 3], [21, 456, 123, 712, 4]])
    labels, boxes = iou_targets(proposals, gt, pos_iou=0.5, neg_iou=0.4, min_pos_iou=0.0)
    assert labels[0].tolist() == [0, 0, 0, 4, 0, 3]
    assert boxes[0].tolist() == [[0] * 4] * 3 + [[21, 456, 123, 712], [0] * 4, [200, 50, 600, 120]]


# ---- against MXNet (tests/fixtures/mxnet_made/reppoints_head*) ----

@pytest.fixture(scope="module")
def mxnet_made():
    with np.load(FIXTURES / "reppoints_head.npz") as f:
        ref = {k: f[k] for k in f.files}
    meta = json.loads(str(ref["meta"]))
    channels, groups = meta["channels"], meta["gn_groups"]
    neck = RepPointsFPNConfig(out_channels=channels, norm="gn", norm_groups=groups).build(
        {"c3": ref["c3"].shape[1], "c4": ref["c4"].shape[1], "c5": ref["c5"].shape[1]})
    head = RepPointsHeadConfig(conv_channels=channels, point_channels=channels, norm_groups=groups,
                               pre_nms_top_n=meta["pre_nms_top_n"], score_thresh=0.0, nms_thresh=1.0,
                               detections_per_img=10_000).build(channels, meta["num_class"] - 1)
    parts = torch.nn.ModuleDict({"neck": neck, "head": head})
    # SimpleDet's names through the converter's rules, as `simpledet convert simpledet` places them
    loaded = read_ndarray_file(FIXTURES / "reppoints_head-0000.params")
    arrays = split_prefixes(getattr(loaded, "arrays", loaded))
    shapes = {k: tuple(v.shape) for k, v in parts.state_dict().items()}
    report = convert_arrays(arrays, shapes)
    parts.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in report.state.items()})
    parts.eval()
    with torch.no_grad():
        feats = neck({name: torch.from_numpy(ref[name]) for name in ("c3", "c4", "c5")})
        outputs = head(feats)
    return ref, feats, outputs, head


def _close(ours: torch.Tensor, theirs: np.ndarray, what: str) -> None:
    theirs = torch.from_numpy(np.asarray(theirs, np.float32))
    scale = float(theirs.abs().max()) or 1.0
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{what}: {m}")


def test_neck_and_head_compute_what_mxnet_computed(mxnet_made):
    ref, feats, (cls_outs, inits, refines), _ = mxnet_made
    for level, s in enumerate(STRIDES):
        _close(feats[f"p{level + 3}"], ref[f"p_{s}"], f"P{level + 3}")
        _close(inits[level], ref[f"pts_init_{s}"], f"initial points, stride {s}")
        _close(refines[level], ref[f"pts_refine_{s}"], f"refined points, stride {s}")
        _close(cls_outs[level], ref[f"cls_{s}"], f"class logits, stride {s}")
    # the points do reach past the border, where MXNet's deformable convolution reads nothing
    init = torch.from_numpy(ref["pts_init_8"])
    assert init.abs().max() > 2


def test_targets_are_simpledets(mxnet_made):
    ref, feats, (_, inits, _), head = mxnet_made
    points = head.anchors(feats, None)
    torch.testing.assert_close(points.all, torch.from_numpy(ref["points"]))
    gt = _gt(ref["gt"])
    for k in (1, 2):
        labels, boxes = point_targets(points.all, gt, scale=4, num_pos=k)
        assert labels[0].tolist() == ref[f"point_labels_k{k}"][0].tolist(), k
        assert boxes.tolist() == ref[f"point_gts_k{k}"].tolist(), k
    # the refining stage's proposals: the moment boxes of the initial points
    mt = head.moment_transfer.detach()
    proposals = points_to_boxes(head.point_coordinates(inits, points), "moment", mt)
    _close(proposals[0], ref["proposals"], "proposals")
    labels, boxes = iou_targets(torch.from_numpy(ref["proposals"])[None], gt, 0.5, 0.5, 0.0)
    assert labels[0].tolist() == ref["iou_labels"][0].tolist()
    assert boxes.tolist() == ref["iou_gts"].tolist()
    assert (labels > 0).sum() > gt.valid.sum()  # some proposals foreground by IoU, not only each object's best


def _simpledet_focal_grad(logits: np.ndarray, labels: np.ndarray, alpha=0.25, gamma=2.0) -> np.ndarray:
    """The gradient SimpleDet's FocalLoss operator writes (operator_cxx/contrib/focal_loss-inl.h),
    normalization "valid": divided by the number of labels >= 1, plus one."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    eps = 1e-14
    positive = alpha * (1 - p) ** gamma * (gamma * p * np.log(p + eps) + p - 1)
    negative = -(1 - alpha) * p ** gamma * (gamma * (1 - p) * np.log(1 - p + eps) - p)
    one_hot = labels[..., None] == np.arange(1, logits.shape[-1] + 1)
    grad = np.where(one_hot, positive, negative)
    grad = np.where(labels[..., None] == -1, 0.0, grad)
    return grad / ((labels >= 1).sum() + 1)


def test_losses_are_simpledets(mxnet_made):
    """Box losses: MXNet's smooth L1 terms (after the foreground weights) summed and divided by the
    foreground count + 1 (SimpleDet's BBoxNorm, a C++ operator), x 0.5 / 1. Classification: the
    gradient of our focal loss is the one SimpleDet's C++ FocalLoss writes."""
    ref, feats, _, head = mxnet_made
    points = head.anchors(feats, None)
    outputs = tuple([torch.from_numpy(ref[f"{kind}_{s}"]).requires_grad_() for s in STRIDES]
                    for kind in ("cls", "pts_init", "pts_refine"))
    losses = head.losses(outputs, points, _gt(ref["gt"]))
    init_fg = (ref["point_labels_k1"] > 0).sum()
    refine_fg = (ref["iou_labels"] > 0).sum()
    expected_init = 0.5 * ref["init_l1"].astype(np.float64).sum() / (init_fg + 1)
    expected_refine = ref["refine_l1"].astype(np.float64).sum() / (refine_fg + 1)
    assert losses["loss_pts_init"].item() == pytest.approx(expected_init, rel=1e-4)
    assert losses["loss_pts_refine"].item() == pytest.approx(expected_refine, rel=1e-4)
    losses["loss_cls"].backward()
    theirs = np.concatenate([ref[f"cls_{s}"].transpose(0, 2, 3, 1).reshape(1, -1, 4) for s in STRIDES], 1)
    expected = _simpledet_focal_grad(theirs, ref["iou_labels"])
    ours = torch.cat([o.grad.permute(0, 2, 3, 1).reshape(1, -1, 4) for o in outputs[0]], 1)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_decoding_is_simpledets(mxnet_made):
    """get_prediction's top points per level, their boxes and class scores (before SimpleDet's
    test script thresholds them and runs NMS): every (point, class) pair ours keeps without
    threshold and suppression."""
    ref, feats, outputs, head = mxnet_made
    points = head.anchors(feats, None)
    sizes = ImageSizes.of((128, 128), [(10_000, 10_000)])  # as the fixture's im_info: nothing clipped
    (det,) = head.postprocess(outputs, points, sizes)
    scores = ref["cls_score"][0, :, 1:]  # SimpleDet's zero background column first
    boxes = np.repeat(ref["bbox_xyxy"][0][:, None], scores.shape[1], 1).reshape(-1, 4)
    classes = np.broadcast_to(np.arange(1, scores.shape[1] + 1), scores.shape).ravel()
    assert len(det["scores"]) == scores.size
    # pair each of ours with SimpleDet's (point, class) of the same class whose box is nearest:
    # scores a rounding apart may come in either order
    same_class = det["labels"].numpy()[:, None] == classes[None]
    distance = np.abs(det["boxes"].numpy()[:, None] - boxes[None]).sum(-1)
    match = np.where(same_class, distance, np.inf).argmin(1)
    assert sorted(match.tolist()) == list(range(scores.size))  # one to one
    _close(det["boxes"], boxes[match], "boxes")
    _close(det["scores"], scores.ravel()[match], "scores")


# ---- training, configs ----

@pytest.fixture(scope="module")
def trained(shapes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reppoints") / "run"
    iters = 40
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}",
        "model.neck.out_channels=32", "model.head.conv_channels=32", "model.head.point_channels=32",
        "model.neck.norm_groups=8", "model.head.norm_groups=8"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_trains_through_the_cli(trained, shapes_dir):
    out, overrides = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(math.isfinite(v) for v in losses)
    assert {"loss_cls", "loss_pts_init", "loss_pts_refine"} <= set(records[0])
    # falling: the last two records below the first two (the point losses rise for a few steps
    # while the points spread out, then fall)
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    model = build_model(small_config(shapes_dir, *overrides[len(shapes_overrides(shapes_dir)):], config=QUICKSTART))
    from simpledet.engine.checkpoint import load_weights

    load_weights(model, out / "model_final.safetensors")
    model.eval()
    with torch.no_grad():
        dets = model([torch.rand(3, 128, 128), torch.rand(3, 96, 160)])
    for det, (h, w) in zip(dets, [(128, 128), (96, 160)]):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) <= 100
        assert (det["boxes"][:, 2:] >= det["boxes"][:, :2]).all()
        assert (det["boxes"][:, 0::2] <= w).all() and (det["boxes"][:, 1::2] <= h).all()
        assert ((det["labels"] >= 1) & (det["labels"] <= 4)).all() and (det["scores"] > 0.05).all()


@pytest.mark.parametrize("override, message", [
    ("model.head.transform=box", "model.head.transform must be one of minmax, partial_minmax, moment, got 'box'"),
    ("model.head.num_points=8", "model.head.num_points must be an odd square"),
    ("model.head.norm=bn", "model.head.norm must be 'gn' or 'none'"),
    ("model.neck.norm_groups=7", "model.neck.norm_groups: 64 channels do not divide into 7 GroupNorm groups"),
])
def test_bad_settings_are_named(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(QUICKSTART, [override]).model.build()


@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_OVERFIT") != "1", reason="set SIMPLEDET_TEST_OVERFIT=1")
def test_overfits_a_few_shapes(tmp_path):
    metrics = json.loads((fit_shapes_images(QUICKSTART, tmp_path, iters=600) / "metrics.json").read_text())
    assert metrics["AP50"] >= 0.9, metrics
