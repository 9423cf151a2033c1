"""Mask R-CNN: mask targets and loss by hand, the model's interface, configs, mask outputs for the
commands, and a small model that learns to segment a few shapes images."""

import json
import time
from pathlib import Path

import pytest
import torch
from pycocotools import mask as mask_utils

from simpledet import load_config
from simpledet.config import save_config
from simpledet.data.coco import CocoDetection
from simpledet.data.loader import build_test_loader, build_train_loader
from simpledet.data.shapes import generate_shapes
from simpledet.engine.evaluator import detections_to_coco, evaluate_detections
from simpledet.engine.mask_outputs import evaluate_masks, masks_for_drawing
from simpledet.modeling.detectors.mask_rcnn import MaskRCNN, MaskRCNNConfig
from simpledet.modeling.heads.mask_head import MaskHeadConfig, mask_loss, mask_targets

from .conftest import REPO
from .helpers import small_config

# ---------------------------------------------------------------- targets and loss, by hand

def test_mask_targets_by_hand():
    # Ground truth in the input image's pixels (56 x 56); RoIs in the resized image's (28 x 28),
    # so each RoI doubles on the mask and every 28x28 target cell is the mean of 2x2 mask pixels.
    gt = torch.zeros(2, 56, 56, dtype=torch.uint8)
    gt[0, 14:42, 0:28] = 1  # rows 14..41, columns 0..27
    gt[1, :, 27:] = 1  # columns 27..55: the cells on column 13 hold one pixel of two
    rois = torch.tensor([[0.0, 0.0, 28.0, 28.0],  # whole image, gt 0
                         [0.0, 7.0, 14.0, 21.0],  # exactly gt 0's rectangle
                         [0.0, 0.0, 28.0, 28.0]])  # whole image, gt 1
    targets = mask_targets([gt], [rois], [torch.tensor([0, 0, 1])], torch.full((1, 4), 2.0), resolution=28)
    assert targets.shape == (3, 28, 28) and targets.dtype == torch.float32
    expected = torch.zeros(28, 28)
    expected[7:21, 0:14] = 1
    assert torch.equal(targets[0], expected)
    assert torch.equal(targets[1], torch.ones(28, 28))
    expected = torch.zeros(28, 28)
    expected[:, 13:] = 1  # half-covered cells (column 13) count as mask: >= 0.5
    assert torch.equal(targets[2], expected)


def test_mask_targets_per_image_and_empty_images():
    gt_a = torch.ones(1, 8, 8, dtype=torch.bool)
    gt_b = torch.zeros(3, 16, 16, dtype=torch.uint8)
    gt_b[2, :8, :8] = 1
    rois = [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 4.0, 8.0, 8.0]])]
    targets = mask_targets([gt_a, gt_b], rois, [torch.zeros(0, dtype=torch.int64), torch.tensor([2, 2])],
                           torch.tensor([[1.0] * 4, [2.0] * 4]), resolution=4)
    assert torch.equal(targets, torch.stack([torch.ones(4, 4), torch.zeros(4, 4)]))


def test_mask_loss_uses_the_class_channel_only():
    logits = torch.zeros(2, 3, 2, 2, requires_grad=True)
    with torch.no_grad():
        logits[0, 1] = 20.0  # not the target class of RoI 0: ignored
        logits[1, 2] = torch.tensor([[20.0, -20.0], [20.0, -20.0]])
    targets = torch.stack([torch.ones(2, 2), torch.tensor([[1.0, 0.0], [1.0, 0.0]])])
    loss = mask_loss(logits, torch.tensor([2, 2]), targets)
    # RoI 0: logits 0 on its class channel, log 2 per pixel; RoI 1 predicted perfectly: ~0
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item() / 2, abs=1e-6)
    loss.backward()
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[0, 2].abs().sum() > 0
    empty = mask_loss(logits[:0], torch.zeros(0, dtype=torch.int64), torch.zeros(0, 2, 2))
    assert empty.item() == 0 and empty.requires_grad


# ---------------------------------------------------------------- the model and its configs

def tiny_mask_rcnn(data_dir: Path, *overrides: str) -> MaskRCNNConfig:
    """The quick-start detector with a light mask branch (2 convs of 32)."""
    cfg = small_config(data_dir, *overrides)
    cfg.model = MaskRCNNConfig.from_faster(cfg.model, MaskHeadConfig(num_convs=2, conv_dim=32))
    return cfg


def test_interface_losses_and_outputs(tmp_path):
    cfg = tiny_mask_rcnn(tmp_path)
    torch.manual_seed(0)
    model = cfg.model.build()
    assert isinstance(model, MaskRCNN) and cfg.model.predicts_masks and not small_config(tmp_path).model.predicts_masks
    # the box branch keeps Faster R-CNN's parameter names: checkpoints and converters carry over
    faster = small_config(tmp_path).model.build()
    assert set(faster.state_dict()) < set(model.state_dict())
    assert {k for k in model.state_dict() if k not in faster.state_dict()} == {
        f"roi_heads.mask_head.{p}.{w}" for p in ("convs.0", "convs.1", "deconv", "logits") for w in ("weight", "bias")}

    images = [torch.rand(3, 100, 120), torch.rand(3, 120, 90)]
    masks = [torch.zeros(1, 100, 120, dtype=torch.uint8), torch.zeros(2, 120, 90, dtype=torch.uint8)]
    masks[0][0, 20:80, 10:60] = 1
    masks[1][0, 5:40, 5:50] = 1
    masks[1][1, 30:110, 30:80] = 1
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1]), "masks": masks[0]},
               {"boxes": torch.tensor([[5.0, 5.0, 50.0, 40.0], [30.0, 30.0, 80.0, 110.0]]),
                "labels": torch.tensor([2, 1]), "masks": masks[1]}]
    model.train()
    losses = model(images, targets)
    assert set(losses) >= {"loss_cls", "loss_box", "loss_mask"} and all(torch.isfinite(v) for v in losses.values())
    losses["loss_mask"].backward()
    assert model.roi_heads.mask_head.logits.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="masks"):
        model(images, [{k: v for k, v in t.items() if k != "masks"} for t in targets])

    model.eval()
    with torch.no_grad():
        out = model(images)
    for det, img in zip(out, images):
        n = len(det["boxes"])
        assert det["masks"].shape == (n, 1, *img.shape[-2:]) and det["masks"].dtype == torch.float32
        if n:
            assert 0 <= det["masks"].min() and det["masks"].max() <= 1


def test_configs_follow_simpledet_and_round_trip(tmp_path):
    base = load_config(REPO / "configs/resnet_v1b/mask_r50v1b_fpn_1x.py")
    faster = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py")
    assert isinstance(base.model, MaskRCNNConfig) and base.model.predicts_masks
    m = base.model.mask_head
    assert (m.pooler_resolution, m.num_convs, m.conv_dim) == (14, 4, 256)
    assert m.in_features == ("p2", "p3", "p4", "p5")
    # SimpleDet's mask configs are its faster configs plus the mask branch
    assert base.model.roi_heads == faster.model.roi_heads and base.model.rpn == faster.model.rpn
    assert base.model.backbone == faster.model.backbone and base.train == faster.train
    for name, depth, iters in [("mask_r50v1b_fpn_2x", 50, 180000), ("mask_r101v1b_fpn_1x", 101, 90000),
                               ("mask_r101v1b_fpn_2x", 101, 180000), ("mask_r152v1b_fpn_1x", 152, 90000),
                               ("mask_r152v1b_fpn_2x", 152, 180000)]:
        cfg = load_config(REPO / f"configs/resnet_v1b/{name}.py")
        assert cfg.model.backbone.depth == depth and cfg.train.max_iter == iters, name
        assert cfg.model.mask_head == m
    v1 = load_config(REPO / "configs/mask_r50v1_fpn_1x.py")
    assert v1.model.backbone.variant == "v1" and v1.model.input.mean == (122.7717, 115.9465, 102.9801)
    tv = load_config(REPO / "configs/torchvision/maskrcnn_resnet50_fpn.py")
    assert tv.model.num_classes == 90 and not tv.model.backbone.fuse_frozen_bn

    save_config(base, tmp_path / "config.json")
    again = load_config(tmp_path / "config.json", ["model.mask_head.conv_dim=128"])
    assert isinstance(again.model, MaskRCNNConfig) and again.model.mask_head.conv_dim == 128
    assert "predicts_masks" not in json.loads((tmp_path / "config.json").read_text())["model"]


# ---------------------------------------------------------------- outputs for eval / predict

def test_mask_outputs_for_the_commands(tmp_path):
    # one 10x10 image with a square object; its detection has the right mask but a wrong box
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 4, 4], "area": 16,
                           "iscrowd": 0, "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}],
          "categories": [{"id": 3, "name": "box"}]}
    ann_file = tmp_path / "gt.json"
    ann_file.write_text(json.dumps(gt))
    # the mask is the ground truth's own rasterisation, at probability 0.9
    polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[2, 2, 6, 2, 6, 6, 2, 6]], 10, 10)))
    ours = torch.from_numpy(polygon).float()[None, None] * 0.9
    det = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1]),
           "scores": torch.tensor([0.8]), "masks": ours}
    records = detections_to_coco([det], [1], {1: 3})
    assert evaluate_masks(ann_file, records).stats["AP"] == pytest.approx(1.0)
    assert evaluate_detections(ann_file, records).stats["AP"] == 0.0  # the box misses

    predictions = detections_to_coco([det], [{"file_name": "a.png"}], {1: 3}, box_decimals=3, score_decimals=5)
    assert predictions[0]["file_name"] == "a.png" and "image_id" not in predictions[0]
    assert predictions[0]["segmentation"] == records[0]["segmentation"]
    assert isinstance(predictions[0]["segmentation"]["counts"], str)
    drawn = masks_for_drawing(det, zoom=3)
    assert drawn.shape == (1, 30, 30) and drawn.dtype == torch.bool and drawn.sum() == 9 * ours.gt(0.5).sum()
    assert masks_for_drawing({"boxes": det["boxes"]}) is None
    assert masks_for_drawing({**det, "masks": ours[:0]}, zoom=2).shape == (0, 20, 20)


# ---------------------------------------------------------------- it learns

ITERS = 100


def test_overfits_a_few_shapes_images_boxes_and_masks(tmp_path):
    data = tmp_path / "shapes"
    generate_shapes(data, num_train=4, num_val=1, seed=1)
    cfg = tiny_mask_rcnn(data)
    torch.manual_seed(0)
    model = cfg.model.build()
    ann_file, image_dir = data / "annotations" / "train.json", data / "train"
    dataset = CocoDetection(ann_file, image_dir, train=True, flip_copies=True, with_masks=True)
    loader = iter(build_train_loader(dataset, batch_size=4, num_workers=0, seed=0))
    lr = 0.02
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                                weight_decay=1e-4)
    start = time.perf_counter()
    model.train()
    for iteration in range(ITERS):
        images, targets = next(loader)
        warmup = min(1.0, 0.1 + 0.9 * iteration / 20)
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup * (0.1 if iteration >= ITERS * 3 // 4 else 1.0)
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
    seconds = time.perf_counter() - start

    model.eval()
    test_set = CocoDetection(ann_file, image_dir)
    records = []
    with torch.no_grad():
        for images, targets in build_test_loader(test_set, 4, 0):
            records += detections_to_coco(model(images), [t["image_id"] for t in targets],
                                          test_set.label_to_category_id)
    assert all("segmentation" in r for r in records)
    box, mask = evaluate_detections(ann_file, records), evaluate_masks(ann_file, records)
    print(f"{ITERS} iterations in {seconds:.0f} s: box AP50 {box.stats['AP50']:.3f} AP {box.stats['AP']:.3f}, "
          f"mask AP50 {mask.stats['AP50']:.3f} AP {mask.stats['AP']:.3f}")
    assert box.stats["AP50"] >= 0.9, box.stats
    assert mask.stats["AP50"] >= 0.9, mask.stats


def test_commands_train_eval_predict_with_masks(tmp_path, capsys):
    """Through the CLI: training reads instance masks, eval reports mask AP beside box AP,
    predict writes RLE segmentations."""
    from simpledet.cli import main

    from .conftest import REPO
    from .helpers import shapes_overrides

    config = REPO / "configs/quickstart/mask_r18_fpn_shapes.py"
    data = tmp_path / "shapes"
    generate_shapes(data, num_train=4, num_val=2, seed=2)
    overrides = shapes_overrides(data) + ["train.max_iter=4", "train.batch_size=2", "train.checkpoint_every=4"]
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), *overrides]) == 0
    weights = out / "model_final.safetensors"
    assert main(["eval", str(config), "--weights", str(weights), "--out", str(tmp_path / "eval"), *overrides]) == 0
    printed = capsys.readouterr().out
    assert "Mask AP (segm)" in printed
    segm = json.loads((tmp_path / "eval" / "metrics_segm.json").read_text())
    assert {"AP", "AP50", "ARl"} <= set(segm)
    preds = tmp_path / "preds.json"
    image = sorted((data / "val").glob("*.png"))[0]
    assert main(["predict", str(config), "--weights", str(weights), str(image), "--out", str(preds),
                 "--score-thresh", "0", "--vis", str(tmp_path / "vis")]) == 0
    records = json.loads(preds.read_text())
    assert records and all("counts" in r["segmentation"] for r in records)
