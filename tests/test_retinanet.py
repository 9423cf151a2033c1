"""RetinaNet: anchors, the FPN's P6/P7, focal and box losses by hand and against torchvision, and
a small RetinaNet trained through the command line until it fits a few shapes images."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import box_iou, sigmoid_focal_loss

from simpledet.cli import main
from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig, save_config
from simpledet.data.shapes import generate_shapes
from simpledet.modeling.anchors import Anchors
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.retinanet import RetinaNetConfig
from simpledet.modeling.heads.retina_head import RetinaHeadConfig, retina_anchor_sizes
from simpledet.modeling.necks.fpn import FPN, FPNConfig
from simpledet.modeling.preprocess import InputConfig
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes

CPU = torch.device("cpu")
ITERS = 120


def test_nine_anchors_per_location_at_simpledet_scales():
    head = RetinaHeadConfig().build(in_channels=8, num_classes=3)
    assert head.anchor_generator.num_anchors_per_location == [9] * 5
    sizes = RetinaHeadConfig().anchor_sizes
    assert [round(s, 2) for s in sizes[0]] == [32.0, 40.32, 50.8]  # 4 x 8 x 2^(0, 1/3, 2/3)
    assert [round(s[0]) for s in sizes] == [32, 64, 128, 256, 512]
    # ratio 1, scale 1 on P3: a 32 x 32 box centred on the first grid point
    anchors = head.anchor_generator((64, 64), [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)], torch.device("cpu")).levels
    assert anchors[0].shape == (8 * 8 * 9, 4)
    assert anchors[0][3].tolist() == [-16.0, -16.0, 16.0, 16.0]
    assert retina_anchor_sizes((8,), octave_base=2.0, scales_per_octave=2) == ((16.0, 16 * 2 ** 0.5),)


@pytest.mark.parametrize("source", ["c5", "p5"])
def test_fpn_p6_p7(source):
    torch.manual_seed(0)
    fpn = FPN({"c3": 8, "c4": 16, "c5": 32}, out_channels=4, extra_p6=False, p6p7_from=source)
    feats = {"c3": torch.randn(1, 8, 16, 16), "c4": torch.randn(1, 16, 8, 8), "c5": torch.randn(1, 32, 4, 4)}
    out = fpn(feats)
    assert list(out) == ["p3", "p4", "p5", "p6", "p7"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert fpn.p6_conv.in_channels == (32 if source == "c5" else 4)
    p6 = fpn.p6_conv(feats["c5"] if source == "c5" else out["p5"])
    torch.testing.assert_close(out["p6"], p6)
    torch.testing.assert_close(out["p7"], fpn.p7_conv(torch.relu(p6)))


def test_fpn_without_p6_p7_is_unchanged():
    fpn = FPNConfig().build({"c2": 4, "c3": 8, "c4": 16, "c5": 32})
    assert fpn.out_features == ["p2", "p3", "p4", "p5", "p6"]
    assert not any(k.startswith(("p6_conv", "p7_conv")) for k in fpn.state_dict())
    with pytest.raises(ValueError):
        FPN({"c5": 8}, out_channels=8, extra_p6=True, p6p7_from="c5")


def test_focal_and_box_loss_by_hand():
    """Three anchors: one on the object (foreground), one far from it (background), one at IoU
    0.45 (between the thresholds: ignored). All logits 0, so p = 0.5 for both classes."""
    head = RetinaHeadConfig(in_features=("p3",), anchor_sizes=((32,),), aspect_ratios=(1.0,)).build(8, 2)
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    anchors = torch.tensor([[0.0, 0.0, 20.0, 20.0], [50.0, 50.0, 70.0, 70.0], [0.0, 0.0, 20.0, 9.0]])
    assert abs(box_iou(gt, anchors)[0, 2].item() - 0.45) < 1e-6
    logits = torch.zeros(1, 3, 2)
    deltas = torch.zeros(1, 3, 4)
    deltas[0, 0] = torch.tensor([0.05, 0.0, 0.2, 0.0])  # the foreground anchor's target is 0
    targets = [{"boxes": gt, "labels": torch.tensor([2])}]
    losses = head.losses(([logits], [deltas]), Anchors.of([anchors]), PaddedGroundTruth.of(targets, CPU))

    log2 = math.log(2.0)
    positive = 0.25 * 0.5**2 * log2  # alpha * (1 - p)^gamma * -log(p)
    negative = 0.75 * 0.5**2 * log2  # (1 - alpha) * p^gamma * -log(1 - p)
    # foreground anchor: one positive (label 2) and one negative column; background: two negatives
    expected_cls = (positive + 3 * negative) / 1  # one foreground anchor
    assert abs(losses["loss_cls"].item() - expected_cls) < 1e-6
    # smooth L1, beta 0.11: 0.5 x^2 / beta below beta, |x| - beta / 2 above
    expected_box = 0.5 * 0.05**2 / 0.11 + (0.2 - 0.055)
    assert abs(losses["loss_box"].item() - expected_box) < 1e-6

    head.box_loss = "l1"
    l1 = head.losses(([logits], [deltas]), Anchors.of([anchors]), PaddedGroundTruth.of(targets, CPU))["loss_box"]
    assert abs(l1.item() - 0.25) < 1e-6


def test_losses_equal_torchvisions():
    """torchvision's layout (label-0 column, L1 box loss), one image: the same two numbers as
    torchvision's RetinaNetHead.compute_loss, low-quality matches included."""
    torch.manual_seed(0)
    cfg = RetinaHeadConfig(in_features=("p3", "p4", "p5"), anchor_sizes=retina_anchor_sizes((8, 16, 32)),
                           background_column=True, box_loss="l1")
    ours = cfg.build(in_channels=16, num_classes=4)
    for p in ours.parameters():  # away from the init, so every term counts
        p.data.normal_(0, 0.05)
    feats = {f"p{i}": torch.randn(1, 16, 2 ** (8 - i), 2 ** (8 - i)) for i in (3, 4, 5)}
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0], [60.0, 60.0, 120.0, 100.0], [3.0, 4.0, 9.0, 30.0]]),
                "labels": torch.tensor([1, 3, 4])}]
    ours.train()
    anchors = ours.anchors(feats, ImageSizes.of((256, 256), [(256, 256)]))
    losses = ours.losses(ours(feats), anchors, PaddedGroundTruth.of(targets, CPU))

    tv = RetinaNetHead(16, 9, 5)
    relu = torch.nn.ReLU
    tv.classification_head.conv = torch.nn.Sequential(*[torch.nn.Sequential(c, relu()) for c in ours.cls_subnet.convs])
    tv.classification_head.cls_logits = ours.cls_subnet.pred
    tv.regression_head.conv = torch.nn.Sequential(*[torch.nn.Sequential(c, relu()) for c in ours.box_subnet.convs])
    tv.regression_head.bbox_reg = ours.box_subnet.pred
    levels = list(feats.values())
    matched = tv_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(targets[0]["boxes"], anchors.all))
    expected = tv.compute_loss(targets, tv(levels), [anchors.all], [matched])
    torch.testing.assert_close(losses["loss_cls"], expected["classification"])
    torch.testing.assert_close(losses["loss_box"], expected["bbox_regression"])


def small_retinanet(data, iters: int) -> Config:
    """The quick start's pieces (slim ResNet-18 with trainable BN, 128 px, 64-channel FPN) with
    RetinaNet's P3-P7 (P6 from C5, as SimpleDet) and anchors of 2 strides x 2^(0, 1/3, 2/3).
    One conv per subnet: from scratch, the 4-conv towers' 0.01-std init takes far more steps."""
    return Config(
        model=RetinaNetConfig(
            num_classes=4,
            input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                              pixel_scale=1.0),
            backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                                  out_features=("c3", "c4", "c5")),
            neck=FPNConfig(out_channels=64, extra_p6=False, p6p7_from="c5"),
            head=RetinaHeadConfig(anchor_sizes=retina_anchor_sizes(octave_base=2.0), num_convs=1),
        ),
        data=DataConfig(train=DatasetConfig(str(data / "annotations/train.json"), str(data / "train")),
                        val=DatasetConfig(str(data / "annotations/train.json"), str(data / "train")),
                        num_workers=0, flip=True, eval_batch_size=4),
        train=TrainConfig(max_iter=iters, batch_size=4, lr=0.01, lr_reference_batch=4, weight_decay=1e-4,
                          warmup_iters=iters // 8, warmup_factor=0.1, steps=(iters * 3 // 4,), clip_grad_norm=10.0,
                          checkpoint_every=iters, log_every=10, seed=0, device="cpu"),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("retina")
    data = root / "shapes"
    generate_shapes(data, num_train=4, num_val=2, seed=1)
    config = root / "retina_small.json"
    save_config(small_retinanet(data, ITERS), config)
    out = root / "run"
    # one intra-op thread: these small convolutions gain little from a second one, and on a
    # shared 2-core machine OpenMP's spin-waits made the run 5-8x slower with two
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(config), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return root, data, config, out


def test_masked_losses_equal_indexed_ones_over_a_batch():
    """A batch of three images with 2, 0 and 3 objects (padding, an image without objects): the
    masked sums over all anchors equal the losses summed over each image's foreground and
    non-ignored anchors picked by indexing, over the batch's foreground count."""
    g = torch.Generator().manual_seed(5)
    head = RetinaHeadConfig(in_features=("p3",), anchor_sizes=((32,),), aspect_ratios=(0.5, 1.0, 2.0)).build(8, 3)
    xy = torch.rand(400, 2, generator=g) * 150
    anchors = torch.cat([xy, xy + 10 + torch.rand(400, 2, generator=g) * 40], 1)
    logits = torch.randn(3, 400, 3, generator=g)
    deltas = 0.3 * torch.randn(3, 400, 4, generator=g)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [80.0, 90.0, 130.0, 120.0]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
               {"boxes": torch.tensor([[5.0, 70.0, 40.0, 110.0], [60.0, 20.0, 100.0, 50.0],
                                       [100.0, 100.0, 160.0, 170.0]]),
                "labels": torch.tensor([2, 2, 1])}]
    losses = head.losses(([logits], [deltas]), Anchors.of([anchors]), PaddedGroundTruth.of(targets, CPU))

    cls_sum, box_sum, num_fg = 0.0, 0.0, 0
    for image, target in enumerate(targets):
        gt = target["boxes"]
        valid_gt = torch.ones(1, len(gt), dtype=torch.bool)
        matched, labels = head.matcher(box_iou(gt, anchors)[None], valid_gt)
        matched, labels = matched[0], labels[0]
        fg, valid = labels == 1, labels != -1
        cls_targets = torch.zeros(400, 3)
        if len(gt):
            cls_targets[fg.nonzero()[:, 0], target["labels"][matched[fg]] - 1] = 1.0
        cls_sum += sigmoid_focal_loss(logits[image][valid], cls_targets[valid], reduction="sum")
        if fg.any():
            goal = head.box_coder.encode(anchors[fg], gt[matched[fg]])
            box_sum += F.smooth_l1_loss(deltas[image][fg], goal, beta=head.box_loss_beta, reduction="sum")
        num_fg += int(fg.sum())
    assert num_fg >= 5  # every object has anchors, so both losses have terms
    torch.testing.assert_close(losses["loss_cls"], cls_sum / num_fg)
    torch.testing.assert_close(losses["loss_box"], box_sum / num_fg)


def test_training_losses_finite_and_falling(trained):
    _, _, _, out = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["iteration"] == ITERS
    assert all(math.isfinite(r["loss_cls"]) and math.isfinite(r["loss_box"]) for r in records)
    assert records[-1]["loss"] < 0.25 * records[0]["loss"]


def test_eval_and_predict_reach_the_objects(trained):
    root, data, config, out = trained
    weights = out / "model_final.safetensors"
    assert main(["eval", str(config), "--weights", str(weights), "--out", str(root / "eval")]) == 0
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["AP50"] >= 0.9, metrics

    images = sorted((data / "train").glob("*.png"))[:2]
    preds = root / "preds.json"
    assert main(["predict", str(config), "--weights", str(weights), *map(str, images), "--out", str(preds)]) == 0
    records = [r for r in json.loads(preds.read_text()) if r["score"] >= 0.5]
    assert records and all(r["category_id"] in (1, 2, 3, 4) for r in records)
