"""FreeAnchor: the head against MXNet running SimpleDet's own builder, the learning-to-match loss
against MXNet running SimpleDet's ops.py and against a plain numpy transcription of its formula,
the configs, and a small FreeAnchor trained through the command line.

tests/fixtures/mxnet_made/free_anchor_head* come from tools/mxnet_free_anchor_fixtures.py (see its
docstring: SimpleDet's head at 16 channels and 4 classes, its loss with the box coding in our
convention)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.engine.checkpoint import load_weights
from simpledet.errors import UserError
from simpledet.modeling.box_coder import BoxCoder
from simpledet.modeling.heads.free_anchor_head import FreeAnchorHead, FreeAnchorHeadConfig
from simpledet.modeling.heads.free_anchor_loss import FreeAnchorLoss
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import fit_shapes_images, shapes_overrides

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mxnet_made"
QUICKSTART = REPO / "configs/quickstart/free_anchor_r18_fpn_shapes.py"
STRIDES = (8, 16, 32, 64, 128)
LEVELS = ("p3", "p4", "p5", "p6", "p7")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mxnet_case():
    data = np.load(FIXTURES / "free_anchor_head.npz")
    meta = json.loads(str(data["meta"]))
    return data, meta


def _per_anchor(x: np.ndarray, per_anchor: int) -> torch.Tensor:
    """MXNet's (N, A * K, H, W) -> our (N, H * W * A, K): anchor-major channels, (y, x, anchor) rows."""
    n, _, h, w = x.shape
    return torch.from_numpy(x).view(n, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, per_anchor)


def test_head_matches_mxnet(mxnet_case):
    """SimpleDet's FreeAnchorRetinaNetHead (4 convs + prediction per subnet, shared across P3-P7),
    its weights placed by the zoo converter's name rules, gives MXNet's outputs."""
    data, meta = mxnet_case
    num_classes = meta["num_class"] - 1
    head = FreeAnchorHeadConfig().build(in_channels=meta["channels"], num_classes=num_classes)
    holder = nn.Module()
    holder.head = head  # the detector's attribute name, which the converter's rules target
    arrays = split_prefixes(read_ndarray_file(FIXTURES / "free_anchor_head-0000.params"))
    report = convert_arrays(arrays, {k: tuple(v.shape) for k, v in holder.state_dict().items()})
    assert len(report.state) == len(holder.state_dict()) == 20
    holder.load_state_dict({k: torch.from_numpy(v) for k, v in report.state.items()})
    features = {level: torch.from_numpy(data[f"feature_stride{s}"]) for level, s in zip(LEVELS, STRIDES)}
    with torch.no_grad():
        logits, deltas = head(features)
    for s, ours_cls, ours_box in zip(STRIDES, logits, deltas):
        for ours, name, k in ((ours_cls, "cls", num_classes), (ours_box, "bbox", 4)):
            theirs = _per_anchor(data[f"{name}_stride{s}"], k)
            scale = theirs.abs().max().item()
            assert scale > 0.1  # the weights reach the outputs
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


def _fixture_loss_inputs(data, num_classes):
    logits = torch.cat([_per_anchor(data[f"cls_stride{s}"], num_classes) for s in STRIDES], 1)
    deltas = torch.cat([_per_anchor(data[f"bbox_stride{s}"], 4) for s in STRIDES], 1)
    # SimpleDet's precomputed anchors (1, 1, H, W, A * 4): rows (y, x, anchor), as ours
    anchors = torch.cat([torch.from_numpy(data[f"anchor_stride{s}"]).reshape(-1, 4) for s in STRIDES])
    targets = [{"boxes": torch.from_numpy(rows[rows[:, 4] > 0, :4]),
                "labels": torch.from_numpy(rows[rows[:, 4] > 0, 4]).long()} for rows in data["gt_bbox"]]
    return logits, deltas, anchors, PaddedGroundTruth.of(targets, CPU)


def test_loss_matches_mxnet(mxnet_case):
    """The positive and negative bag losses equal what SimpleDet's ops.py gives in MXNet on the
    same outputs, anchors and objects (two images, 3 objects, padded rows)."""
    data, meta = mxnet_case
    logits, deltas, anchors, gt = _fixture_loss_inputs(data, meta["num_class"] - 1)
    assert gt.valid.tolist() == [[True, True], [True, False]]
    loss = FreeAnchorHeadConfig().build(in_channels=8, num_classes=4).loss
    ours = loss(logits, deltas, anchors, gt)
    for name, key in (("loss_positive", "positive_loss"), ("loss_negative", "negative_loss")):
        theirs = float(data[key])
        assert theirs > 0.01
        assert abs(ours[name].item() - theirs) <= 1e-5 * theirs, (name, ours[name].item(), theirs)


# ---------------------------------------------------------------- an independent numpy reference

def _reference_loss(probs, deltas, anchors, objects, *, alpha, gamma, bag_size, thresh, beta, box_weight, weights):
    """SimpleDet's formula written out object by object and anchor by anchor (no batching).
    objects: per image a list of (x1, y1, x2, y2, label); labels 1..K are column label - 1."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    def encode(a, g):
        aw, ah, gw, gh = a[2] - a[0], a[3] - a[1], g[2] - g[0], g[3] - g[1]
        return np.array([weights[0] * ((g[0] + gw / 2) - (a[0] + aw / 2)) / aw,
                         weights[1] * ((g[1] + gh / 2) - (a[1] + ah / 2)) / ah,
                         weights[2] * math.log(gw / aw), weights[3] * math.log(gh / ah)])

    def decode(a, d):
        aw, ah = a[2] - a[0], a[3] - a[1]
        cx, cy = a[0] + aw / 2 + d[0] / weights[0] * aw, a[1] + ah / 2 + d[1] / weights[1] * ah
        w, h = math.exp(d[2] / weights[2]) * aw, math.exp(d[3] / weights[3]) * ah
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    def smooth_l1(x):
        x = abs(x)
        return 0.5 * x * x / beta if x < beta else x - 0.5 * beta

    num_objects = max(sum(len(o) for o in objects), 1)
    positive = negative = 0.0
    for b, image_objects in enumerate(objects):
        for obj in image_objects:
            ious = [iou(obj, a) for a in anchors]
            bag = sorted(range(len(anchors)), key=lambda i: -ious[i])[:bag_size]
            p = []
            for i in bag:
                box_loss = sum(smooth_l1(x) for x in deltas[b][i] - encode(anchors[i], obj))
                p.append(probs[b][i][int(obj[4]) - 1] * math.exp(-box_weight * box_loss))
            w = [1.0 / max(1.0 - q, 1e-12) for q in p]
            bag_prob = sum(wi * q for wi, q in zip(w, p)) / sum(w)
            positive += -alpha * math.log(min(max(bag_prob, 1e-12), 1.0)) / num_objects
        if not image_objects:
            continue  # SimpleDet: the first (padding) row's label is not > 0, every anchor masked
        for i, anchor in enumerate(anchors):
            box = decode(anchor, deltas[b][i])
            ious = [iou(obj, box) for obj in image_objects]
            best_of = [max(iou(obj, decode(a, deltas[b][j])) for j, a in enumerate(anchors)) for obj in image_objects]
            value = [min(max((u - thresh) / (max(m, thresh + 1e-12) - thresh), 0.0), 1.0)
                     for u, m in zip(ious, best_of)]
            g = int(np.argmax(value))
            for k in range(len(probs[b][i])):
                box_prob = value[g] if k == int(image_objects[g][4]) - 1 else 0.0
                q = probs[b][i][k] * (1.0 - box_prob)
                negative += (1 - alpha) * q ** gamma * -math.log(min(max(1.0 - q, 1e-12), 1.0)) \
                    / (num_objects * bag_size)
    return positive, negative


def test_loss_matches_a_numpy_reference_of_simpledets_formula():
    """Eight anchors, three classes; image 0 has two overlapping objects of different classes,
    image 1 one object, image 2 none (it adds nothing). Deltas move some anchors onto the objects
    so that the negative part's IoU map sees values between 0.6 and the best."""
    anchors = np.array([[0, 0, 40, 40], [10, 10, 50, 50], [20, 20, 60, 60], [30, 5, 90, 45], [50, 50, 100, 100],
                        [5, 30, 45, 110], [60, 0, 100, 40], [0, 60, 40, 100]], np.float32)
    objects = [[(8.0, 12.0, 52.0, 47.0, 2), (25.0, 18.0, 70.0, 58.0, 3)], [(48.0, 52.0, 96.0, 104.0, 1)], []]
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 8, 3, generator=g) * 1.5
    deltas = torch.randn(3, 8, 4, generator=g) * 0.3
    cfg = FreeAnchorHeadConfig(bag_size=3)
    loss = FreeAnchorLoss(BoxCoder(cfg.box_weights), alpha=cfg.alpha, gamma=cfg.gamma, bag_size=cfg.bag_size,
                          iou_thresh=cfg.iou_thresh, box_loss_beta=cfg.box_loss_beta,
                          box_loss_weight=cfg.box_loss_weight)
    targets = [{"boxes": torch.tensor([o[:4] for o in objs]).reshape(-1, 4),
                "labels": torch.tensor([o[4] for o in objs], dtype=torch.int64)} for objs in objects]
    gt = PaddedGroundTruth.of(targets, CPU)
    logits.requires_grad_(True)
    deltas.requires_grad_(True)
    ours = loss(logits, deltas, torch.from_numpy(anchors), gt)
    # the reference in float64 from the same inputs
    positive, negative = _reference_loss(torch.sigmoid(logits.double()).detach().numpy(),
                                         deltas.double().detach().numpy(), anchors.astype(np.float64),
                                         objects, alpha=0.5, gamma=2.0, bag_size=3, thresh=0.6, beta=0.11,
                                         box_weight=0.75, weights=(10.0, 10.0, 5.0, 5.0))
    assert positive > 0.1 and negative > 0.01
    assert ours["loss_positive"].item() == pytest.approx(positive, rel=1e-5)
    assert ours["loss_negative"].item() == pytest.approx(negative, rel=1e-5)
    # padded rows (images 1 and 2) leave every gradient finite; the negative part reaches the
    # class logits only, the positive part the deltas too
    sum(ours.values()).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(deltas.grad).all()
    assert logits.grad[2].abs().sum() == 0 and deltas.grad.abs().sum() > 0


def test_negative_part_takes_one_object_per_anchor():
    """Where a decoded box detects two objects of different classes, only the object of higher
    IoU-probability discounts the anchor (SimpleDet's argmax); the other class is penalised in full."""
    cfg = FreeAnchorHeadConfig(bag_size=1)
    loss = FreeAnchorLoss(BoxCoder(cfg.box_weights), alpha=0.5, gamma=2.0, bag_size=1, iou_thresh=0.6,
                          box_loss_beta=0.11, box_loss_weight=0.75)
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = PaddedGroundTruth.of([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0]]),
                                "labels": torch.tensor([1, 2])}], CPU)
    logits = torch.zeros(1, 1, 2)  # p = 0.5 in both columns
    out = loss(logits, torch.zeros(1, 1, 4), anchors, gt)
    # object 0 (IoU 1, value 1) wins: column 0 is discounted to 0; column 1 keeps p = 0.5, although
    # object 1's own best IoU (0.9, value 1) would discount it too
    expected = 0.5 * 0.5 ** 2 * math.log(2.0) / (2 * 1)
    assert out["loss_negative"].item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- configs

def test_configs_are_simpledets():
    for name, warmup, depth in (("free_anchor_r50v1_fpn_1x", 500, 50), ("free_anchor_r101v1_fpn_1x", 1000, 101)):
        cfg = load_config(REPO / "configs" / "FreeAnchor" / f"{name}.py")
        head = cfg.model.head
        assert (head.prior_prob, head.alpha, head.gamma, head.bag_size, head.iou_thresh) == (0.02, 0.5, 2.0, 50, 0.6)
        assert head.box_weights == (10.0, 10.0, 5.0, 5.0)  # 1 / std (0.1, 0.1, 0.2, 0.2)
        assert (head.pre_nms_top_n, head.score_thresh, head.nms_thresh, head.detections_per_img) == \
            (1000, 0.05, 0.5, 100)
        assert cfg.model.backbone.variant == "v1" and cfg.model.backbone.depth == depth
        assert cfg.model.neck.p6p7_from == "c5"
        train = cfg.train
        # 0.005 / 8 per image x 16 images; 500 / 1000 warmup iterations from lr / 3; 60k and 80k
        assert (train.lr, train.lr_reference_batch, train.warmup_iters, train.steps) == \
            (0.01, 16, warmup, (60000, 80000))
        assert abs(train.warmup_factor - 1 / 3) < 1e-12 and train.clip_grad_norm == 35.0
    with torch.device("meta"):
        head = FreeAnchorHeadConfig().build(in_channels=8, num_classes=80)
    assert isinstance(head, FreeAnchorHead)
    assert head.cls_subnet.pred.out_channels == 9 * 80
    bias = FreeAnchorHeadConfig().build(in_channels=8, num_classes=2).cls_subnet.pred.bias
    assert torch.sigmoid(bias).sub(0.02).abs().max() < 1e-6


@pytest.mark.parametrize("override, field", [("model.head.bag_size=0", "bag_size"),
                                              ("model.head.iou_thresh=1.5", "iou_thresh"),
                                              ("model.head.alpha=0", "alpha"),
                                              ("model.head.box_loss_beta=0", "box_loss_beta")])
def test_bad_head_settings_are_named(override, field):
    cfg = load_config(QUICKSTART, [override])
    with pytest.raises(UserError, match=f"model.head.{field}"):
        cfg.model.build()


def test_bad_head_setting_exits_2_from_the_command_line(tmp_path, shapes_dir, capsys):
    overrides = shapes_overrides(shapes_dir) + ["model.head.bag_size=0", "train.max_iter=1"]
    assert main(["train", str(QUICKSTART), "--out", str(tmp_path / "run"), *overrides]) == 2
    err = capsys.readouterr().err
    assert "model.head.bag_size" in err and "Traceback" not in err


# ---------------------------------------------------------------- training

ITERS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    out = tmp_path_factory.mktemp("free_anchor") / "run"
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={ITERS}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.warmup_iters=5", f"train.steps=({ITERS},)", f"train.checkpoint_every={ITERS}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_training_losses_finite_and_falling(trained):
    out, _ = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == ITERS
    for key in ("loss", "loss_positive", "loss_negative"):
        assert all(math.isfinite(r[key]) for r in records), key
    positive = [r["loss_positive"] for r in records]
    assert sum(positive[len(positive) // 2:]) / (len(positive) - len(positive) // 2) < positive[0], positive


def test_trained_model_detects_well_formed_boxes(trained, shapes_dir):
    out, overrides = trained
    # a low threshold: after a few steps, scores are still near the 0.02 prior; every path of the
    # decoding (top-k, clipping, NMS, the cap of 100) is then exercised
    model = build_model(load_config(QUICKSTART, [*overrides, "model.head.score_thresh=0.001"]), load_pretrained=False)
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 140)]
    with torch.no_grad():
        detections = model(images)
    for det, image in zip(detections, images):
        n = len(det["boxes"])
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == det["labels"].shape == (n,) and 0 < n <= 100
        assert (det["scores"] > 0.001).all() and ((det["labels"] >= 1) & (det["labels"] <= 4)).all()
        boxes = det["boxes"]
        assert (boxes[:, 2:] >= boxes[:, :2]).all() and (boxes[:, 0] >= 0).all()
        assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
    # inputs are checked where they enter
    with pytest.raises(ValueError):
        model.train()(images, [{"boxes": torch.tensor([[5.0, 5.0, 1.0, 9.0]]), "labels": torch.tensor([1])}] * 2)


# ---------------------------------------------------------------- speed paths

def test_graphed_step_equals_the_eager_step_and_the_loss_never_waits(monkeypatch):
    """train.cuda_graphs replaces the dense step (backbone, FPN and both subnets); with the capture
    stood in on the CPU (tests/graph_standin.py) a training step gives the plain model's losses and
    gradients bit for bit. The loss runs outside the capture, and makes the host wait for the
    device nowhere (no nonzero, item or boolean indexing)."""
    import copy

    from simpledet.accel.cuda_graphs import enable_cuda_graphs
    from tests.graph_standin import CaptureRules, FakeGraphs, assert_graphed_step_equals_eager

    FakeGraphs(monkeypatch)
    torch.manual_seed(0)
    plain = build_model(load_config(QUICKSTART), load_pretrained=False).train()
    graphed = copy.deepcopy(plain)
    assert enable_cuda_graphs(graphed, 2, torch.device("cuda"))
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[5.0, 6, 60, 70], [30, 20, 90, 80]]), "labels": torch.tensor([1, 2])},
               {"boxes": torch.tensor([[40.0, 10, 80, 50]]), "labels": torch.tensor([4])}]
    assert_graphed_step_equals_eager(plain, graphed, images, targets)
    assert len(graphed.dense_step.graphs) == 1

    batch, sizes, padded = plain.preprocess(images, targets)
    features, outputs = plain.dense_step(batch)
    anchors = plain.head.anchors(features, sizes)
    gt = PaddedGroundTruth.of(padded, CPU)
    with CaptureRules() as rules:
        plain.head.losses(outputs, anchors, gt)
    assert rules.refused == []


# ---------------------------------------------------------------- opt-in: fitting a few images

@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_OVERFIT") != "1", reason="set SIMPLEDET_TEST_OVERFIT=1")
def test_quickstart_fits_a_few_images(tmp_path):
    eval_dir = fit_shapes_images(QUICKSTART, tmp_path, iters=200, clip_grad_norm=None)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["AP50"] >= 0.9, metrics
