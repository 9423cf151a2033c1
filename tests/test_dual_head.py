"""The dual box head (SimpleDet's FPNBboxDualHeadSmall): against SimpleDet's own (run by MXNet), its
two branches kept apart, its output through the RoI-bucketing seam, and training through the CLI."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model, load_config
from simpledet.accel.roi_bucket import run_bucketed
from simpledet.cli import main
from simpledet.config import save_config
from simpledet.engine.checkpoint import load_weights
from simpledet.errors import UserError
from simpledet.modeling.heads.dual_head import DualBoxPredictor, DualHead, DualHeadConfig, DualHeadRoIHeadsConfig
from simpledet.weights.mxnet_format import read_ndarray_file
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import fit_shapes_images, shapes_overrides, small_val_overrides

FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"
QUICKSTART = REPO / "configs" / "quickstart" / "faster_dualhead_r18_fpn_shapes.py"


def small_head(channels: int = 16, fc_dim: int = 32, conv_dim: int = 8, num_classes: int = 4
               ) -> tuple[DualHead, DualBoxPredictor]:
    head = DualHead(in_channels=channels, resolution=7, fc_dim=fc_dim, num_convs=4, conv_dim=conv_dim)
    predictor = DualBoxPredictor(cls_features=head.cls_features, reg_features=head.reg_features,
                                 num_classes=num_classes, class_agnostic=False)
    return head, predictor


def test_dual_head_matches_simpledet_in_mxnet():
    """SimpleDet's FPNBboxDualHeadSmall.get_output at reduced width (tools/mxnet_dual_head_fixtures.py),
    its weights placed by the converter's rules: class logits and per-class box deltas."""
    data = np.load(FIXTURES / "dual_head.npz")
    meta = json.loads(str(data["meta"]))
    arrays = {k.split(":", 1)[1]: v for k, v in read_ndarray_file(FIXTURES / "dual_head-0000.params").items()}
    head, predictor = small_head(meta["channels"], 1024 // meta["div"], 256 // meta["div"], meta["num_class"] - 1)
    holder = nn.Module()  # the converter's names: roi_heads.box_head.*, roi_heads.box_predictor.*
    holder.roi_heads = nn.Module()
    holder.roi_heads.box_head, holder.roi_heads.box_predictor = head, predictor
    report = convert_arrays(arrays, {k: tuple(v.shape) for k, v in holder.state_dict().items()})
    assert not report.initialised  # SimpleDet's regression convs have no bias, nor do ours
    holder.load_state_dict({k: torch.from_numpy(v) for k, v in report.state.items()})
    with torch.no_grad():
        logits, deltas = predictor(head(torch.from_numpy(data["roi_feat"])))
    for ours, name in ((logits, "bbox_cls_logit"), (deltas, "bbox_reg_delta")):
        expected = torch.from_numpy(data[name])
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_branches_read_their_own_features():
    """The class logits depend on the fcs only, the deltas on the convs only."""
    torch.manual_seed(0)
    head, predictor = small_head()
    rois = torch.randn(5, 16, 7, 7)
    with torch.no_grad():
        logits, deltas = predictor(head(rois))
        head.reg_convs[0].weight.mul_(2)
        logits_2, deltas_2 = predictor(head(rois))
        head.cls_fcs[0].weight.mul_(2)
        logits_3, deltas_3 = predictor(head(rois))
    assert torch.equal(logits, logits_2) and not torch.allclose(deltas, deltas_2)
    assert torch.equal(deltas_2, deltas_3) and not torch.allclose(logits_2, logits_3)
    assert logits.shape == (5, 5) and deltas.shape == (5, 20)


def test_padded_rois_give_the_same_outputs():
    """run_bucketed pads the RoIs with zero rows and cuts the head's one output tensor back."""
    torch.manual_seed(0)
    head, _ = small_head()
    rois = torch.randn(5, 16, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(run_bucketed(head, rois, search=True), head(rois))


def test_config_is_faster_with_the_dual_head(tmp_path):
    """SimpleDet's dualheadsmall config is its faster_r50v1b_fpn_1x with the box head replaced;
    a saved config reads back the same. The full model's head: 12544 -> 1024 -> 1024 -> 81 for
    classes, 4 bias-free 3x3 convs of 256 and 12544 -> 324 for boxes."""
    cfg = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_dualheadsmall_1x.py")
    faster = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py")
    assert isinstance(cfg.model.roi_heads, DualHeadRoIHeadsConfig)
    assert cfg.model.roi_heads.box_head == DualHeadConfig(fc_dim=1024, num_convs=4, conv_dim=256)
    settings = {f.name for f in dataclasses.fields(faster.model.roi_heads)} - {"box_head"}
    assert all(getattr(cfg.model.roi_heads, n) == getattr(faster.model.roi_heads, n) for n in settings)
    assert cfg.model.backbone == faster.model.backbone and cfg.model.rpn == faster.model.rpn
    assert cfg.train == faster.train and cfg.data == faster.data
    save_config(cfg, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == cfg
    with torch.device("meta"):
        heads = cfg.model.build().roi_heads
    shapes = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
    assert shapes["box_head.cls_fcs.0.weight"] == (1024, 12544)
    assert shapes["box_predictor.cls_score.weight"] == (81, 1024)
    assert shapes["box_head.reg_convs.3.weight"] == (256, 256, 3, 3) and "box_head.reg_convs.3.bias" not in shapes
    assert shapes["box_predictor.bbox_pred.weight"] == (324, 12544)


def test_dual_head_settings_checked():
    with pytest.raises(UserError, match="model.roi_heads.box_head.num_convs must be at least 1"):
        DualHeadConfig(num_convs=0).build(16, 7)


ITERS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    root = tmp_path_factory.mktemp("dual_head")
    overrides = shapes_overrides(shapes_dir) + small_val_overrides(shapes_dir, root, images=2) + [
        f"train.max_iter={ITERS}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={ITERS}"]
    out = root / "run"
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_trains_and_predicts(trained):
    out, overrides = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses))
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    model = build_model(load_config(QUICKSTART, overrides), load_pretrained=False)
    load_weights(model, out / "model_final.safetensors")
    assert isinstance(model.roi_heads.box_predictor, DualBoxPredictor)
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 112, 128, generator=torch.Generator().manual_seed(0))])
    n = len(det["boxes"])
    assert 0 < n <= 100 and det["boxes"].shape == (n, 4) and det["scores"].shape == det["labels"].shape == (n,)
    assert bool(((det["labels"] >= 1) & (det["labels"] <= 4)).all()) and bool((det["scores"] >= 0.05).all())
    assert bool((det["boxes"][:, 2:] >= det["boxes"][:, :2]).all())


@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_OVERFIT") != "1", reason="opt-in: SIMPLEDET_TEST_OVERFIT=1")
def test_overfits_small_shapes_set(tmp_path):
    """Trains the quick-start dual-head Faster R-CNN on 8 images until box AP50 on them reaches 0.9."""
    box = json.loads((fit_shapes_images(QUICKSTART, tmp_path, iters=160) / "metrics.json").read_text())
    print(f"box AP50 {box['AP50']:.3f}")
    assert box["AP50"] >= 0.9, box
