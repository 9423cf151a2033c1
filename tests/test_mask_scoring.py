"""Mask Scoring R-CNN: the MaskIoU head against SimpleDet's own (run by MXNet), its IoU targets
against hand-computed values and an independent numpy reference of SimpleDet's maskiou_compute, its
loss, mask AP ranked by the mask scores, and training and evaluation through the CLI."""

import copy
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch import nn

from simpledet import build_model, load_config
from simpledet.cli import main
from simpledet.config import save_config
from simpledet.engine.checkpoint import load_weights
from simpledet.engine.evaluator import detections_to_coco, evaluate_detections
from simpledet.engine.mask_outputs import evaluate_masks
from simpledet.errors import UserError
from simpledet.modeling.detectors.mask_scoring_rcnn import MaskScoringRCNNConfig
from simpledet.modeling.heads.mask_head import mask_targets
from simpledet.modeling.heads.maskiou_head import (
    MaskIoUHead,
    MaskIoUHeadConfig,
    mask_area_ratio,
    mask_scores,
    maskiou_input,
    maskiou_loss,
    maskiou_targets,
)
from simpledet.weights.mxnet_format import read_ndarray_file
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import fit_shapes_images, shapes_overrides, small_val_overrides

FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"
QUICKSTART = REPO / "configs" / "quickstart" / "mask_scoring_r18_fpn_shapes.py"


# ---------------------------------------------------------------- the head against MXNet


def test_maskiou_head_matches_simpledet_in_mxnet():
    """SimpleDet's MaskIoUConvHead.get_maskiou_prediction at reduced width (tools/mxnet_msrcnn_fixtures.py):
    the per-class IoUs and the mask scores (IoU of the detection's class x its score)."""
    data = np.load(FIXTURES / "maskiou_head.npz")
    meta = json.loads(str(data["meta"]))
    arrays = {k.split(":", 1)[1]: v for k, v in read_ndarray_file(FIXTURES / "maskiou_head-0000.params").items()}
    channels, div, num_class = meta["channels"], meta["div"], meta["num_class"]
    head = MaskIoUHead(in_channels=channels + 1, resolution=14, num_classes=num_class - 1, num_convs=4,
                       conv_dim=256 // div, fc_dim=1024 // div)
    holder = nn.Module()  # the converter's names: roi_heads.maskiou_head.*
    holder.roi_heads = nn.Module()
    holder.roi_heads.maskiou_head = head
    report = convert_arrays(arrays, {k: tuple(v.shape) for k, v in holder.state_dict().items()})
    holder.load_state_dict({k: torch.from_numpy(v) for k, v in report.state.items()})
    labels = torch.from_numpy(data["post_cls"]).long() + 1  # SimpleDet's post-processing counts from 0
    probs = torch.from_numpy(data["mask_prob"])[torch.arange(len(labels)), labels][:, None]
    with torch.no_grad():
        predicted = head.eval()(maskiou_input(torch.from_numpy(data["conv_feat"]), probs))
    expected = torch.from_numpy(data["iou_head_pred"])
    scale = expected.abs().max()
    torch.testing.assert_close(predicted, expected, rtol=1e-4, atol=1e-5 * scale)
    scores = mask_scores(predicted, labels, torch.from_numpy(data["post_cls_score"]))
    torch.testing.assert_close(scores, torch.from_numpy(data["maskiou_prediction"]).reshape(-1), rtol=1e-4,
                               atol=1e-5 * scale)


# ---------------------------------------------------------------- targets and loss


def reference_maskiou(gt_mask: np.ndarray, box: np.ndarray, target: np.ndarray, probs: np.ndarray) -> float:
    """SimpleDet's maskiou_compute for one RoI, written independently with loops: its inputs are
    the RoI's S x S binary target and predicted probabilities, and the share of the instance's
    pixels inside the RoI (here: pixels whose centres lie in the box, counted one by one); the
    union uses the whole instance's area in the RoI's grid units."""
    x1, y1, x2, y2 = box
    h, w = gt_mask.shape
    inside = sum(int(gt_mask[py, px]) for py in range(h) for px in range(w)
                 if x1 <= px + 0.5 < x2 and y1 <= py + 0.5 < y2)
    ratio = max(inside / (int(gt_mask.sum()) + 1e-4), 1e-10)
    predicted = probs > 0.5
    intersection = float((target * predicted).sum())
    union = max(float(target.sum()) / ratio + float(predicted.sum()) - intersection, 1.0)
    return max(intersection, 0.0) / union


def test_maskiou_target_hand_computed():
    """A 20 x 10 instance, a RoI over its left half (10 x 10): the RoI's 4 x 4 target is all ones,
    the ratio 100 / 200, so the instance is 32 cells in the RoI's grid. All 16 predicted: IoU
    16 / 32; the left half predicted: 8 / 32; nothing predicted: 0."""
    gt = torch.zeros(1, 30, 40, dtype=torch.uint8)
    gt[0, 5:15, 10:30] = 1
    rois = [torch.tensor([[10.0, 5.0, 20.0, 15.0]])]
    index = [torch.tensor([0])]
    to_original = torch.ones(1, 4)
    goal = mask_targets([gt], rois, index, to_original, 4)
    assert torch.equal(goal, torch.ones(1, 4, 4))
    ratio = mask_area_ratio([gt], rois, index, to_original)
    torch.testing.assert_close(ratio, torch.tensor([100 / (200 + 1e-4)]))
    half = torch.zeros(1, 4, 4)
    half[:, :, :2] = 0.9
    probs = torch.stack([torch.full((4, 4), 0.9), half[0], torch.full((4, 4), 0.2)])
    iou = maskiou_targets(probs, goal.expand(3, -1, -1), ratio.expand(3))
    # the instance's area is 16 / ratio = 32.000016 cells
    torch.testing.assert_close(iou, torch.tensor([16 / 32.000016, 8 / 32.000016, 0.0]))


def test_maskiou_targets_match_numpy_reference():
    """Hand-made masks (an L shape, a ring, a bar), RoIs in the resized image's pixels (scale 2 to
    the mask's), some cutting their instance, one outside it; random predictions."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(3, 48, 64, dtype=torch.uint8)
    masks[0, 4:30, 6:14] = 1
    masks[0, 22:30, 6:40] = 1
    masks[1, 10:40, 30:60] = 1
    masks[1, 18:32, 38:52] = 0
    masks[2, 40:44, 2:62] = 1
    boxes = torch.tensor([[12.0, 8.0, 80.0, 60.0], [60.4, 20.2, 119.6, 79.8], [70.0, 30.0, 100.0, 50.0],
                          [4.0, 80.0, 124.0, 88.0], [0.0, 0.0, 20.0, 16.0], [13.0, 9.0, 30.0, 61.0]])
    index = torch.tensor([0, 1, 1, 2, 2, 0])
    to_original = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    size = 8
    goal = mask_targets([masks], [boxes], [index], to_original, size)
    probs = torch.rand(len(boxes), size, size, generator=g)
    iou = maskiou_targets(probs, goal, mask_area_ratio([masks], [boxes], [index], to_original))
    expected = [reference_maskiou(masks[i].numpy(), (b * 0.5).double().numpy(), t.numpy(), p.numpy())
                for i, b, t, p in zip(index.tolist(), boxes, goal, probs)]
    assert iou[4] == 0  # a RoI beside its instance
    torch.testing.assert_close(iou.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_maskiou_loss_hand_computed():
    """0.5 x squared error of each RoI's own class, over the RoIs; none: a zero with a gradient."""
    predicted = torch.tensor([[0.0, 0.5, 0.9], [0.3, 0.2, 0.7], [0.1, 0.8, 0.4]], requires_grad=True)
    labels = torch.tensor([1, 2, 1])
    targets = torch.tensor([0.7, 0.7, 0.5])
    loss = maskiou_loss(predicted, labels, targets)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (0.04 + 0.0 + 0.09) / 3))
    empty = maskiou_loss(predicted[:0], labels[:0], targets[:0])
    empty.backward()
    assert empty.item() == 0 and predicted.grad is not None


def test_mask_scores_rank_masks_for_mask_ap_only():
    """One object, two detections of its class: the first with the right box, a wrong mask and
    the higher classification score, the second with a wrong box, the right mask and the higher mask
    score. Mask AP ranks by the mask score: the right mask comes first (AP 1; by the classification
    score it would come second: AP 0.5 at every IoU threshold). Box AP keeps the classification
    score: the right box comes first (AP 1; by the mask score, 0.5)."""
    gt_mask = np.zeros((40, 40), np.uint8)
    gt_mask[10:30, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(gt_mask))
    ground_truth = {"images": [{"id": 1, "width": 40, "height": 40}], "categories": [{"id": 7, "name": "thing"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400,
                                     "iscrowd": 0, "segmentation": {"size": [40, 40],
                                                                    "counts": rle["counts"].decode()}}]}
    wrong = torch.zeros(40, 40)
    wrong[0:8, 0:8] = 1
    output = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([1, 1]),
              "scores": torch.tensor([0.9, 0.6]), "masks": torch.stack([wrong, torch.from_numpy(gt_mask).float()]),
              "mask_scores": torch.tensor([0.1, 0.5])}
    records = detections_to_coco([output], [1], {1: 7})
    assert [r["mask_score"] for r in records] == [0.1, 0.5] and [r["score"] for r in records] == [0.9, 0.6]
    assert evaluate_masks(ground_truth, records).stats["AP"] == pytest.approx(1.0)
    without = [{k: v for k, v in r.items() if k != "mask_score"} for r in records]
    assert evaluate_masks(ground_truth, without).stats["AP"] == pytest.approx(0.5)
    assert evaluate_detections(ground_truth, records).stats["AP"] == pytest.approx(1.0)
    by_mask_score = [{**r, "score": r["mask_score"]} for r in records]
    assert evaluate_detections(ground_truth, by_mask_score).stats["AP"] == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["ms_r50v1_fpn_1x", "resnet_v1b/ms_r50v1b_fpn_1x"])
def test_configs_are_the_mask_configs_plus_the_maskiou_head(name, tmp_path):
    """SimpleDet's ms configs are its mask configs with MaskIoUConvHead added (4 convs of 256, 2 fcs
    of 1024), nothing else changed; a saved config reads back the same."""
    cfg = load_config(REPO / "configs" / f"{name}.py")
    mask = load_config(REPO / "configs" / f"{name.replace('ms_', 'mask_')}.py")
    assert isinstance(cfg.model, MaskScoringRCNNConfig)
    assert cfg.model.maskiou_head == MaskIoUHeadConfig(num_convs=4, conv_dim=256, fc_dim=1024)
    assert {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(mask.model)} == vars(mask.model)
    assert cfg.train == mask.train and cfg.data == mask.data
    save_config(cfg, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == cfg


def test_maskiou_head_settings_checked():
    with pytest.raises(UserError, match="model.maskiou_head.fc_dim must be at least 1"):
        MaskIoUHeadConfig(fc_dim=0).build(16, 14, 4)


# ---------------------------------------------------------------- training and evaluation


ITERS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    root = tmp_path_factory.mktemp("mask_scoring")
    overrides = shapes_overrides(shapes_dir) + small_val_overrides(shapes_dir, root, images=2) + [
        f"train.max_iter={ITERS}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={ITERS}"]
    out = root / "run"
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return root, out, overrides


def test_trains_with_falling_losses(trained):
    _, out, _ = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses))
    assert all("loss_maskiou" in r and np.isfinite(r["loss_maskiou"]) for r in records), records[0]
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses


def test_eval_scores_masks_by_mask_score(trained, shapes_dir):
    """`eval` writes box AP ranked by the classification scores and mask AP ranked by the mask
    scores: each equals the evaluator's on detections.json, with `score` replaced by `mask_score`
    for segm (the evaluator is checked against pycocotools itself in tests/test_overfit.py)."""
    from simpledet.engine.evaluator import evaluate_detections

    root, out, overrides = trained
    eval_dir = root / "eval"
    assert main(["eval", str(QUICKSTART), "--weights", str(out / "model_final.safetensors"), "--out", str(eval_dir),
                 *overrides, "model.roi_heads.score_thresh=0.0"]) == 0
    records = json.loads((eval_dir / "detections.json").read_text())
    # the predicted IoU is a plain regression output: early in training it may be negative
    assert records and all("segmentation" in r and isinstance(r["mask_score"], float) for r in records)
    assert any(r["mask_score"] != r["score"] for r in records)
    # the last override wins, as load_config applies them: the small validation set
    ann_file = [o.split("=", 1)[1] for o in overrides if o.startswith("data.val.ann_file=")][-1]
    for name, iou_type, rescored in (("metrics.json", "bbox", [{k: v for k, v in r.items() if k != "segmentation"}
                                                               for r in records]),
                                     ("metrics_segm.json", "segm",
                                      [{**{k: v for k, v in r.items() if k not in ("bbox", "mask_score")},
                                        "score": r["mask_score"]} for r in records])):
        expected = evaluate_detections(ann_file, copy.deepcopy(rescored), iou_type=iou_type).stats
        metrics = json.loads((eval_dir / name).read_text())
        assert metrics["AP"] == pytest.approx(expected["AP"], abs=1e-9), (name, metrics, expected)


def test_inference_outputs_well_formed(trained, shapes_dir):
    """Each detection's mask score is its score x its class's predicted IoU, from the trained model."""
    _, out, overrides = trained
    model = build_model(load_config(QUICKSTART, overrides), load_pretrained=False)
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    captured = {}
    head = model.roi_heads.maskiou_head
    handle = head.register_forward_hook(lambda m, i, o: captured.setdefault("iou", o))
    image = torch.rand(3, 112, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (det,) = model([image])
    handle.remove()
    n = len(det["boxes"])
    assert 0 < n <= 100 and det["masks"].shape == (n, 1, 112, 128) and det["mask_scores"].shape == (n,)
    expected = det["scores"] * captured["iou"][torch.arange(n), det["labels"]]
    torch.testing.assert_close(det["mask_scores"], expected)


@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_OVERFIT") != "1", reason="opt-in: SIMPLEDET_TEST_OVERFIT=1")
def test_overfits_small_shapes_set(tmp_path):
    """Trains the quick-start Mask Scoring R-CNN on 8 images until box and mask AP50 on them reach 0.9."""
    eval_dir = fit_shapes_images(QUICKSTART, tmp_path, iters=200)
    box = json.loads((eval_dir / "metrics.json").read_text())
    segm = json.loads((eval_dir / "metrics_segm.json").read_text())
    print(f"box AP50 {box['AP50']:.3f}, mask AP50 {segm['AP50']:.3f}")
    assert box["AP50"] >= 0.9 and segm["AP50"] >= 0.9, (box, segm)



def test_exportable_form_outputs_the_mask_scores(trained, shapes_dir):
    """The one-image form `simpledet export` traces ends with mask_scores, the model's own."""
    from simpledet.data.image_io import read_image
    from simpledet.deploy.exportable import ExportableDetector

    _, out, _ = trained
    cfg = load_config(out / "config.json")
    assert cfg.model.predicts_masks and cfg.model.predicts_mask_scores
    model = build_model(cfg, load_pretrained=False)
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    image = read_image(sorted((shapes_dir / "val").glob("*.png"))[0])
    with torch.no_grad():
        want = model([image])[0]
        detector = ExportableDetector(model, category_ids=None, masks=True, mask_scores=True)
        outputs = dict(zip(detector.output_names, detector(image)))
    assert list(outputs) == ["boxes", "scores", "labels", "masks", "mask_scores"] and len(want["scores"]) > 0
    torch.testing.assert_close(outputs["mask_scores"], want["mask_scores"])


@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_ALL_EXPORTS") != "1",
                    reason="SIMPLEDET_TEST_ALL_EXPORTS=1 exports the Mask Scoring model too")
def test_onnx_export_outputs_the_mask_scores(trained, shapes_dir, tmp_path):
    """`simpledet export` writes mask_scores beside the masks; ONNX Runtime's equal the model's."""
    pytest.importorskip("onnxruntime")
    from simpledet.data.image_io import read_image
    from simpledet.deploy.onnx_runtime import OnnxDetector

    from .test_export_onnx import assert_same_detections

    _, out, overrides = trained
    onnx_file = tmp_path / "ms.onnx"
    assert main(["export", "--weights", str(out / "model_final.safetensors"), "--format", "onnx",
                 "--out", str(onnx_file)]) == 0
    exported = OnnxDetector(onnx_file)
    assert exported.output_names == ["boxes", "scores", "labels", "masks", "mask_scores"]
    model = build_model(load_config(out / "config.json"), load_pretrained=False)
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    image = read_image(sorted((shapes_dir / "val").glob("*.png"))[0])
    with torch.no_grad():
        want = model([image])[0]
    got = exported(image)
    assert len(want["scores"]) > 0 and got["mask_scores"].shape == want["scores"].shape
    assert_same_detections(want, got, min_score=float(want["scores"].max()) * 0.5)
