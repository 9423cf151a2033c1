"""FCOS: SimpleDet's rules (points, assignment, losses, decoding) on hand-computed cases; the head's
arithmetic, loaded through the SimpleDet converter's names, against an independent reference of
SimpleDet's builder; torchvision's rules against torchvision's own FCOS (its matching and losses on
the same outputs, and the whole detector on a photograph); training through the CLI."""

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.fcos import FCOSHead as TorchvisionFCOSHead
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from simpledet import build_model, load_config
from simpledet.cli import main
from simpledet.data.image_io import read_image
from simpledet.modeling.fcos_targets import FCOSPoints, assign_simpledet, assign_torchvision, centerness, grid_points
from simpledet.modeling.heads.fcos_head import FCOSHeadConfig
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes
from simpledet.weights.simpledet_checkpoint import convert_arrays
from simpledet.weights.torchvision import convert_torchvision

from .conftest import REPO
from .helpers import (
    assert_same_detections,
    converted_from_torchvision,
    fit_shapes_images,
    randomise_frozen_bn,
    shapes_overrides,
    small_config,
)

QUICKSTART = REPO / "configs/quickstart/fcos_r18_fpn_shapes.py"
TV_CONFIG = REPO / "configs/torchvision/fcos_resnet50_fpn.py"


def hand_points() -> FCOSPoints:
    """Two levels of points placed by hand (strides 8 and 16), in one 32 x 32 image."""
    levels = [torch.tensor([[4.0, 4], [12, 4], [4, 12], [10, 10]]), torch.tensor([[8.0, 8], [16, 16], [12, 12]])]
    return FCOSPoints(levels, ImageSizes.of((32, 32), [(32, 32)]))


# A [0, 0, 24, 24] (area 576), B [2, 2, 10, 14] (96), F [2, 2, 30, 30] (784), and a padding row
HAND_BOXES = torch.tensor([[[0.0, 0, 24, 24], [2, 2, 10, 14], [2, 2, 30, 30], [0, 0, 0, 0]]])
HAND_VALID = torch.tensor([[True, True, True, False]])


def test_simpledet_assignment_by_hand():
    # level 0 takes largest side distances in [0, 12), level 1 [12, inf):
    # (4, 4): B (2, 2, 6, 10); (12, 4): outside B, A's 20 too large; (4, 12): B; (10, 10): B's right
    # edge (r = 0) counts as inside; level 1: A (largest distance 16, 16, 12: the lower bound is
    # inclusive) rather than F, which holds all three too but is larger
    matched = assign_simpledet(hand_points(), HAND_BOXES, HAND_VALID, (12.0,))
    assert matched.tolist() == [[1, -1, 1, 1, 0, 0, 0]]


def test_torchvision_assignment_by_hand():
    # strictly inside and strictly within the bounds: (10, 10) is on B's edge; at (12, 12) A's
    # largest distance is exactly 12, so F takes it
    matched = assign_torchvision(hand_points(), HAND_BOXES, HAND_VALID, (12.0,), (8, 16), radius=1.5)
    assert matched.tolist() == [[1, -1, 1, -1, 0, 0, 2]]
    # radius 0.5: (4, 4) and (4, 12) are 4 px (= 0.5 x 8) from B's centre (6, 8) on one axis
    matched = assign_torchvision(hand_points(), HAND_BOXES, HAND_VALID, (12.0,), (8, 16), radius=0.5)
    assert matched.tolist() == [[-1, -1, -1, -1, 0, 0, 2]]


def test_points_and_centerness_by_hand():
    # SimpleDet: i * stride + stride / 2; torchvision: i * (padded // feature size)
    simpledet = grid_points((2, 3), (16, 24), 8, 0.5, False, torch.device("cpu"))
    assert simpledet.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    torchvision = grid_points((7, 10), (800, 1216), 128, 0.0, True, torch.device("cpu"))
    assert torchvision[:2].tolist() == [[0, 0], [121, 0]] and torchvision[10].tolist() == [0, 114]
    assert centerness(torch.tensor([[2.0, 8, 6, 4]])).item() == pytest.approx(math.sqrt(2 / 6 * 4 / 8))
    assert centerness(torch.tensor([[0.0, 8, 6, 4]])).item() == 0


def test_simpledet_losses_by_hand():
    """One level, three points of a 24 x 16 image padded to 32 wide, one box [0, 0, 16, 8] of
    label 2: points (4, 4) and (12, 4) inside, (28, 4) in the padding (ignored)."""
    head = FCOSHeadConfig(in_features=("p3",), strides=(8,), size_bounds=(), num_groups=8).build(16, 2)
    points = FCOSPoints([torch.tensor([[4.0, 4], [12, 4], [28, 4]])], ImageSizes.of((16, 32), [(16, 24)]))
    gt = PaddedGroundTruth.of([{"boxes": torch.tensor([[0.0, 0, 16, 8]]), "labels": torch.tensor([2])}],
                              torch.device("cpu"))
    logits = torch.tensor([[[0.3, -1.0], [-2.0, 0.5], [4.0, 4.0]]])
    distances = torch.tensor([[[2.0, 2, 2, 2], [4, 4, 4, 4], [1, 1, 1, 1]]])
    ctr = torch.tensor([[0.2, -0.4, 3.0]])
    losses = head.losses(([logits], [distances], [ctr]), points, gt)

    def focal(x, y, alpha=0.25, gamma=2.0):
        p = 1 / (1 + np.exp(-x))
        return -alpha * (1 - p) ** gamma * np.log(p) if y else -(1 - alpha) * p ** gamma * np.log(1 - p)

    # two foreground points in the image, column 1 (label 2) positive; normaliser 2 + 1
    cls = sum(focal(x, c == 1) for point in ([0.3, -1.0], [-2.0, 0.5]) for c, x in enumerate(point)) / 3
    target_ctr = math.sqrt(4 / 12 * 4 / 4)  # (4, 4, 12, 4) and (12, 4, 4, 4) alike

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -y * math.log(p) - (1 - y) * math.log(1 - p)

    ctr_loss = (bce(0.2, target_ctr) + bce(-0.4, target_ctr)) / 2
    # IoU: (2, 2, 2, 2) in (4, 4, 12, 4): I = 4 x 4, U = 16 x 8; (4, 4, 4, 4) in (12, 4, 4, 4): I = 8 x 8, U = 128
    box = (-math.log(17 / 129) - math.log(65 / 129)) / 2
    assert losses["loss_cls"].item() == pytest.approx(cls, rel=1e-5)
    assert losses["loss_centerness"].item() == pytest.approx(ctr_loss, rel=1e-5)
    assert losses["loss_box"].item() == pytest.approx(box, rel=1e-5)


def test_simpledet_decoding_by_hand():
    """Class probabilities above the threshold, or, where a level has pre_nms_top_n of them, the
    top pre_nms_top_n of all points by p x centerness; score sqrt(p x centerness); boxes with
    neither width nor height dropped."""
    cfg = FCOSHeadConfig(in_features=("p3",), strides=(8,), size_bounds=(), num_groups=8, pre_nms_top_n=2)
    head = cfg.build(16, 1)
    points = FCOSPoints([torch.tensor([[4.0, 4], [44, 4], [84, 4], [124, 4]])], ImageSizes.of((64, 160), [(64, 160)]))
    logit = torch.logit(torch.tensor([0.9, 0.06, 0.5, 0.04]))
    logits, ctr = logit.reshape(1, 4, 1), torch.logit(torch.tensor([[0.1, 0.99, 0.5, 0.99]]))
    distances = torch.tensor([[[2.0, 3, 4, 5], [1, 1, 1, 1], [2, 2, 2, 2], [1, 1, 1, 1]]])
    (det,) = head.postprocess(([logits], [distances], [ctr]), points, points.sizes)
    # three above 0.05 >= 2: the best two of p x c = (0.09, 0.0594, 0.25, 0.0396)
    assert det["scores"].tolist() == pytest.approx([0.5, 0.3], abs=1e-6)
    assert det["boxes"].tolist() == [[82, 2, 86, 6], [2, 1, 8, 9]] and det["labels"].tolist() == [1, 1]
    head.pre_nms_top_n = 4  # fewer candidates than that: all of them, and only them
    (det,) = head.postprocess(([logits], [distances], [ctr]), points, points.sizes)
    assert det["scores"].tolist() == pytest.approx([0.5, 0.3, math.sqrt(0.0594)], abs=1e-6)
    distances[0, 2] = 0  # no width, no height: dropped
    (det,) = head.postprocess(([logits], [distances], [ctr]), points, points.sizes)
    assert det["scores"].tolist() == pytest.approx([0.3, math.sqrt(0.0594)], abs=1e-6)


def reference_simpledet_head(arrays: dict, x: torch.Tensor, stride: int) -> tuple:
    """SimpleDet's FCOSFPNHead.get_output for one level, written from builder.py with numpy
    GroupNorm (32 groups, eps 1e-5, a gamma and beta per channel) and the arrays by SimpleDet's names."""
    def t(name):
        return torch.from_numpy(arrays[name])

    def gn(y, name):
        a = y.numpy().astype(np.float64)
        n, c, h, w = a.shape
        g = a.reshape(n, 32, -1)
        g = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)
        a = g.reshape(n, c, h, w) * arrays[name + "_scale"][None, :, None, None] + \
            arrays[name + "_bias"][None, :, None, None]
        return torch.from_numpy(a.astype(np.float32))

    def conv(y, name):
        return F.conv2d(y, t(name + "_weight"), t(name + "_bias"), padding=1)

    shared, offset = x, x
    for i in range(1, 5):
        shared = torch.relu(gn(conv(shared, f"shared_conv{i}_3x3"), f"shared_gn{i}_3x3_{stride}"))
        offset = torch.relu(gn(conv(offset, f"offset_conv{i}_3x3"), f"offset_gn{i}_3x3_{stride}"))
    center = conv(shared, "centerness_conv_3x3")
    cls = conv(shared, "cls_conv_3x3")
    dist = torch.exp(conv(offset, "offset_conv5_3x3") * t(f"offset_scale_{stride}_w"))
    return cls, dist, center


def test_head_against_simpledet_reference():
    """Random arrays under SimpleDet's names (GroupNorm per level, distinct per stride) go through
    the converter's name rules into our head; on random features of two levels it computes what
    SimpleDet's graph computes."""
    head = FCOSHeadConfig(in_features=("p3", "p4"), strides=(8, 16), size_bounds=(64.0,)).build(64, 3).eval()
    shapes = {f"head.{k}": tuple(v.shape) for k, v in head.state_dict().items()}
    rng = np.random.default_rng(0)
    arrays = {}
    for i in range(1, 5):
        for side in ("shared", "offset"):
            arrays[f"{side}_conv{i}_3x3_weight"] = rng.normal(0, 0.05, (64, 64, 3, 3)).astype(np.float32)
            arrays[f"{side}_conv{i}_3x3_bias"] = rng.normal(0, 0.1, 64).astype(np.float32)
            for stride in (8, 16):
                arrays[f"{side}_gn{i}_3x3_{stride}_scale"] = rng.uniform(0.5, 1.5, 64).astype(np.float32)
                arrays[f"{side}_gn{i}_3x3_{stride}_bias"] = rng.normal(0, 0.1, 64).astype(np.float32)
    for name, out in (("centerness_conv_3x3", 1), ("cls_conv_3x3", 3), ("offset_conv5_3x3", 4)):
        arrays[name + "_weight"] = rng.normal(0, 0.05, (out, 64, 3, 3)).astype(np.float32)
        arrays[name + "_bias"] = rng.normal(0, 0.1, out).astype(np.float32)
    for stride in (8, 16):
        arrays[f"offset_scale_{stride}_w"] = rng.uniform(0.5, 1.5, (1, 1, 1, 1)).astype(np.float32)
    report = convert_arrays(arrays, shapes, "simpledet-fcos")
    head.load_state_dict({k[len("head."):]: torch.from_numpy(v) for k, v in report.state.items()})
    features = {"p3": torch.randn(2, 64, 8, 6, generator=torch.Generator().manual_seed(0)),
                "p4": torch.randn(2, 64, 4, 3, generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        logits, distances, ctr = head(features)
    for level, (name, stride) in enumerate((("p3", 8), ("p4", 16))):
        cls, dist, center = reference_simpledet_head(arrays, features[name], stride)
        n, _, h, w = cls.shape
        torch.testing.assert_close(logits[level], cls.permute(0, 2, 3, 1).reshape(n, h * w, -1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(distances[level], dist.permute(0, 2, 3, 1).reshape(n, h * w, 4), rtol=1e-4,
                                   atol=1e-5)
        torch.testing.assert_close(ctr[level], center.reshape(n, h * w), rtol=1e-4, atol=1e-5)


def test_torchvision_matching_and_losses_match_torchvision():
    """Our torchvision rules against torchvision's FCOS.compute_loss on the same outputs: the
    matched box of every point and the three losses."""
    g = torch.Generator().manual_seed(0)
    channels, sizes = 32, [(16, 20), (8, 10), (4, 5)]
    cfg = load_config(TV_CONFIG).model.head
    cfg.in_features, cfg.strides, cfg.size_bounds, cfg.num_groups = ("p3", "p4", "p5"), (8, 16, 32), (64.0, 128.0), 8
    ours = cfg.build(channels, 5)
    tv_head = TorchvisionFCOSHead(channels, 1, 6)
    backbone = torch.nn.Identity()
    backbone.out_channels = channels
    anchor_gen = AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3)
    reference = FCOS(backbone, 6, anchor_generator=anchor_gen, head=tv_head)
    # torchvision's level i takes (4 x size_i, 8 x size_i), the first from 0, the last to infinity
    boxes = [torch.tensor([[10.0, 12, 60, 70], [70, 5, 150, 120], [20, 30, 44, 50], [0, 0, 160, 128]]),
             torch.tensor([[30.0, 40, 90, 100], [100, 60, 130, 90]])]
    labels = [torch.tensor([1, 3, 5, 2]), torch.tensor([4, 4])]
    targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]
    features = {f"p{i + 3}": torch.zeros(2, channels, h, w) for i, (h, w) in enumerate(sizes)}
    image_sizes = ImageSizes.of((128, 160), [(128, 160), (128, 160)])
    points = ours.anchors(features, image_sizes)
    from torchvision.models.detection.image_list import ImageList
    tv_anchors = anchor_gen(ImageList(torch.zeros(2, 3, 128, 160), [(128, 160)] * 2),
                            [features[k] for k in ("p3", "p4", "p5")])
    assert torch.equal(points.all, (tv_anchors[0][:, :2] + tv_anchors[0][:, 2:]) / 2)

    captured = {}
    original = tv_head.compute_loss

    def capture(targets, outputs, anchors, matched_idxs):
        captured["matched"] = torch.stack(matched_idxs)
        return original(targets, outputs, anchors, matched_idxs)

    tv_head.compute_loss = capture
    counts = [h * w for h, w in sizes]
    logits = torch.randn(2, sum(counts), 6, generator=g)
    distances = torch.rand(2, sum(counts), 4, generator=g) * 3
    ctr = torch.randn(2, sum(counts), generator=g)
    expected = reference.compute_loss(targets, {"cls_logits": logits, "bbox_regression": distances,
                                                "bbox_ctrness": ctr[..., None]}, tv_anchors, counts)
    gt = PaddedGroundTruth.of(targets, torch.device("cpu"))
    matched = assign_torchvision(points, gt.boxes, gt.valid, cfg.size_bounds, cfg.strides, 1.5)
    assert torch.equal(matched, captured["matched"]) and (matched >= 0).sum() > 20
    got = ours.losses(tuple(list(t.split(counts, 1)) for t in (logits, distances, ctr)), points, gt)
    for ours_name, tv_name in (("loss_cls", "classification"), ("loss_box", "bbox_regression"),
                               ("loss_centerness", "bbox_ctrness")):
        torch.testing.assert_close(got[ours_name], expected[tv_name], rtol=1e-5, atol=1e-6)


def torchvision_model() -> torch.nn.Module:
    """fcos_resnet50_fpn as torchvision builds it around a pretrained backbone (frozen BN, 3
    trainable stages, P6 from P5), random weights, randomised BN statistics and GroupNorm affines."""
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    # a smaller resize than torchvision's 800 / 1333 (the same on both sides): the test stays fast
    model = FCOS(backbone, num_classes=91, score_thresh=0.0, min_size=320, max_size=512)
    randomise_frozen_bn(model)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.head.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def torchvision_fcos():
    return torchvision_model()


def test_same_detections_as_torchvision(tmp_path, photo_path, torchvision_fcos):
    ours = converted_from_torchvision(torchvision_fcos, TV_CONFIG, [
        "model.head.score_thresh=0", "model.input.min_size=(320,)", "model.input.max_size=512"], tmp_path)
    image = read_image(photo_path)
    images = [image, image[:, 100:500, 50:400]]  # two sizes: a padded batch
    with torch.no_grad():
        expected = torchvision_fcos(images)
        got = ours(images)
    for exp, det in zip(expected, got):
        assert_same_detections(det, exp, 100)


def test_torchvision_converter_names(torchvision_fcos):
    converted, skipped = convert_torchvision(torchvision_fcos.state_dict())
    assert not [s for s in skipped if not s.endswith("num_batches_tracked")]
    assert set(converted) == set(build_model(load_config(TV_CONFIG)).state_dict())
    assert torch.equal(converted["head.box_tower.norms.0.3.weight"],
                       torchvision_fcos.head.regression_head.conv[10].weight)


@pytest.mark.parametrize("field", ["assign_rule", "loss_rule", "score_rule"])
def test_rule_fields_are_checked(field):
    with pytest.raises(ValueError, match=f"model.head.{field} must be one of"):
        load_config(QUICKSTART, [f"model.head.{field}=mmdet"]).model.build()


def test_head_biases_train_at_twice_the_lr_without_decay():
    """SimpleDet's FCOS head: every conv bias has lr_mult 2 and wd_mult 0; the rest trains at the
    schedule's lr with train.weight_decay. One SGD step (no momentum) shows both."""
    from simpledet.config import TrainConfig
    from simpledet.engine.optimizer import build_optimizer

    head = FCOSHeadConfig(in_features=("p3",), strides=(8,), num_convs=1, num_groups=4, size_bounds=()).build(8, 2)
    groups = {(g["lr_mult"], g["weight_decay"]): g for g in build_optimizer(
        [head], TrainConfig(weight_decay=0.1, momentum=0.0), 0.5, torch.device("cpu")).param_groups}
    assert set(groups) == {(1.0, 0.1), (2.0, 0.0)}
    names = {id(p): n for n, p in head.named_parameters()}
    assert sorted(names[id(p)] for p in groups[2.0, 0.0]["params"]) == [
        "box_pred.bias", "box_tower.convs.0.bias", "centerness.bias", "cls_pred.bias", "cls_tower.convs.0.bias"]
    plain = FCOSHeadConfig(in_features=("p3",), strides=(8,), num_convs=1, num_groups=4, size_bounds=(),
                           bias_lr_mult=1.0, bias_weight_decay=None).build(8, 2)
    assert len(build_optimizer([plain], TrainConfig(), 0.5, torch.device("cpu")).param_groups) == 1
    assert load_config(REPO / "configs/torchvision/fcos_resnet50_fpn.py").model.head.bias_lr_mult == 1.0


def test_trainer_steps_each_group_at_its_lr(tmp_path, shapes_dir):
    """The trainer sets a group's lr to the schedule's x its lr_mult: after one step of plain SGD,
    a bias moved by 2 x lr x its gradient (no decay), a weight by lr x (gradient + decay x w)."""
    from simpledet.engine.trainer import Trainer

    cfg = small_config(shapes_dir, "train.max_iter=1", "train.checkpoint_every=1", "train.momentum=0.0",
                       "train.warmup_iters=0", "train.weight_decay=0.1", "train.clip_grad_norm=0", config=QUICKSTART)
    trainer = Trainer(cfg, tmp_path / "run")
    head = trainer.model.head
    before = {n: p.detach().clone() for n, p in head.named_parameters()}
    grads = {}
    for name in ("cls_pred.bias", "cls_pred.weight"):
        head.get_parameter(name).register_hook(lambda g, name=name: grads.__setitem__(name, g.clone()))
    trainer.train()
    lr = trainer.base_lr
    bias, weight = head.get_parameter("cls_pred.bias"), head.get_parameter("cls_pred.weight")
    torch.testing.assert_close(bias.detach(), before["cls_pred.bias"] - 2 * lr * grads["cls_pred.bias"])
    torch.testing.assert_close(weight.detach(), before["cls_pred.weight"]
                               - lr * (grads["cls_pred.weight"] + 0.1 * before["cls_pred.weight"]))


def test_quickstart_trains_on_shapes(tmp_path, shapes_dir):
    out = tmp_path / "run"
    iters = 30
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    model = build_model(load_config(QUICKSTART, [*overrides, "model.head.score_thresh=0"])).eval()
    from simpledet.engine.checkpoint import load_weights
    load_weights(model, out / "model_final.safetensors")
    with torch.no_grad():
        dets = model([torch.rand(3, 128, 128), torch.rand(3, 96, 128)])
    for det, (h, w) in zip(dets, [(128, 128), (96, 128)]):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) == 100
        assert (det["boxes"][:, 0::2] >= 0).all() and (det["boxes"][:, 0::2] <= w).all()
        assert (det["boxes"][:, 1::2] <= h).all() and ((det["labels"] >= 1) & (det["labels"] <= 4)).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_OVERFIT") != "1", reason="opt-in: SIMPLEDET_TEST_OVERFIT=1")
def test_quickstart_overfits_shapes(tmp_path):
    metrics = json.loads((fit_shapes_images(QUICKSTART, tmp_path, iters=200) / "metrics.json").read_text())
    assert metrics["AP50"] >= 0.9, metrics
