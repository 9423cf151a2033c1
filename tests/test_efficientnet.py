"""EfficientNet-B5 + FPN with BN (SimpleDet's models/efficientnet): numbers against MXNet, the
configs' shape, bad settings, and a tiny version trained from scratch through the CLI.

tests/fixtures/mxnet_made/efficientnet_* were computed by MXNet 1.9.1 with SimpleDet's own
builder code (tools/mxnet_efficientnet_fixtures.py): the EfficientNet helper at reduced depth and
width with B5's strides, kernels and unit types, the FPN neck and the 2fc box head with the
configs' BN, random weights and non-trivial BN statistics, in inference mode. The arrays go through
the SimpleDet checkpoint converter's renaming (simpledet_checkpoint.convert_arrays) into our modules."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.errors import UserError
from simpledet.modeling.backbones.efficientnet import EfficientNetConfig, SqueezeExcite
from simpledet.modeling.heads.box_head import BoxPredictor
from simpledet.modeling.heads.box_head_bn import NormMLPHeadConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig

from .conftest import REPO
from .helpers import load_simpledet_arrays, mxnet_fixture, relative_error, shapes_overrides

QUICKSTART = REPO / "configs/quickstart/faster_effnet_shapes.py"
B5_6X = REPO / "configs/efficientnet/efficientnet_b5_fpn_bn_scratch_400_6x.py"
# max |ours - MXNet| / max |MXNet| per output (float32 rounding is ~1e-6 here)
TOLERANCE = 1e-4
BROKEN = 1e-3  # what a real mistake gives at least


pytestmark = pytest.mark.usefixtures("one_thread")  # the nets are tiny


@pytest.fixture(scope="module")
def backbone_and_neck():
    data, meta, arrays = mxnet_fixture("efficientnet_fpn")
    model = nn.Module()
    model.backbone = EfficientNetConfig(repeats=tuple(meta["repeats"]), channels=tuple(meta["channels"]),
                                        strides=tuple(meta["strides"]), kernels=tuple(meta["kernels"])).build()
    model.neck = NormFPNConfig(out_channels=16, extra_p6=True, norm="bn").build(model.backbone.output_shape())
    load_simpledet_arrays(model, arrays)
    image = torch.from_numpy(data["image"].astype(np.float32))
    x = (image - torch.from_numpy(data["mean"]).view(1, 3, 1, 1)) / torch.from_numpy(data["std"]).view(1, 3, 1, 1)
    return model, x, data


def _run(model, x):
    with torch.no_grad():
        features = model.backbone(x)
        return {**features, **model.neck(features)}


def test_backbone_and_fpn_match_mxnet(backbone_and_neck):
    model, x, data = backbone_and_neck
    outputs = _run(model, x)
    assert list(outputs) == ["c2", "c3", "c4", "c5", "p2", "p3", "p4", "p5", "p6"]
    for name, ours in outputs.items():
        assert tuple(ours.shape) == data[name].shape, name
        assert relative_error(ours, data[name]) < TOLERANCE, (name, relative_error(ours, data[name]))
    # strides 4..64 on the 64x96 image
    assert [tuple(o.shape[-2:]) for o in outputs.values()][4:] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]


def test_the_comparison_has_teeth(backbone_and_neck, monkeypatch):
    """Without squeeze-and-excitation, or with the paper's swish in place of SimpleDet's ReLU6, c5
    moves far outside the tolerance."""
    model, x, data = backbone_and_neck
    monkeypatch.setattr(SqueezeExcite, "forward", lambda self, t: t)
    assert relative_error(_run(model, x)["c5"], data["c5"]) > BROKEN
    monkeypatch.undo()
    monkeypatch.setattr(torch.nn.functional, "relu6", torch.nn.functional.silu)
    assert relative_error(_run(model, x)["c5"], data["c5"]) > BROKEN


def test_box_head_matches_mxnet():
    data, meta, arrays = mxnet_fixture("efficientnet_box_head")
    rois = torch.from_numpy(data["rois"])
    model = nn.Module()
    model.roi_heads = nn.Module()
    model.roi_heads.box_head = NormMLPHeadConfig(fc_dim=32, num_fc=2, norm="bn").build(rois.shape[1], 7)
    model.roi_heads.box_predictor = BoxPredictor(in_features=32, num_classes=meta["num_class"] - 1,
                                                 class_agnostic=False)
    load_simpledet_arrays(model, arrays)
    with torch.no_grad():
        cls_logit, bbox_delta = model.roi_heads.box_predictor(model.roi_heads.box_head(rois))
    assert relative_error(cls_logit, data["cls_logit"]) < TOLERANCE
    assert relative_error(bbox_delta, data["bbox_delta"]) < TOLERANCE


def test_b5_config_is_simpledets():
    """SimpleDet's EfficientNet-B5 FPN endpoints (stages 3, 4, 6, 9: 40, 64, 172, 2048 channels at
    strides 4..32) and its config's settings (config/efficientnet/*_6x.py)."""
    cfg = load_config(B5_6X)
    with torch.device("meta"):
        model = cfg.model.build()
        features = model.backbone(torch.empty(1, 3, 416, 608))
    assert model.backbone.output_shape() == {"c2": 40, "c3": 64, "c4": 172, "c5": 2048}
    assert {k: tuple(v.shape[1:]) for k, v in features.items()} == {
        "c2": (40, 104, 152), "c3": (64, 52, 76), "c4": (172, 26, 38), "c5": (2048, 13, 19)}
    # trainable BN everywhere (from scratch), one per conv in the backbone; none frozen
    assert all(p.requires_grad for p in model.parameters())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules()) == 2 + 2 * 3 + 3 * 36
    # MBConv's SE squeezes to a quarter of the unit's *input* channels: stage 3's first unit 24 -> 6
    assert tuple(model.backbone.layer3[0].se.fc1.weight.shape) == (6, 144, 1, 1)
    train = cfg.train
    # lr 0.01 / 8 x 8 GPUs x 8 images, warmup from 0 over 500, steps 60k / 20k (of 16 images) before the end
    assert (train.lr, train.lr_reference_batch, train.batch_size, train.warmup_factor) == (0.08, 64, 8, 0.0)
    assert train.max_iter == 118287 * 2 // 16 * 36 // 4 and train.steps == (118065, 128065)
    assert cfg.model.rpn.anchor_sizes == ((16,), (32,), (64,), (128,), (256,))
    assert (cfg.model.input.min_size, cfg.model.input.max_size) == ((400,), 600)
    assert load_config(REPO / "configs/efficientnet/efficientnet_b5_fpn_bn_scratch_400_12x.py").train.steps == \
        (248630, 258630)


@pytest.mark.parametrize("override, message", [
    ("model.backbone.kernels=(3,3,3,4,3,5,5,3,1)", "model.backbone.kernels must be odd"),
    ("model.backbone.repeats=(1,1,1)", "model.backbone.channels needs one value per stage"),
    ("model.backbone.out_stages=(3,4,6,10)", "model.backbone.out_stages must be 4 increasing"),
    ("model.backbone.norm=layer", "model.backbone.norm must be one of"),
    ("model.neck.norm=frozen", "model.neck.norm must be one of"),
    ("model.roi_heads.box_head.norm=in", "model.roi_heads.box_head.norm must be one of"),
])
def test_bad_settings_are_named(override, message):
    cfg = load_config(QUICKSTART, [override])
    with pytest.raises(UserError, match=message):
        with torch.device("meta"):
            cfg.model.build()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    out = tmp_path_factory.mktemp("effnet") / "run"
    iters = 30
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=2", "train.lr=0.02", "train.lr_reference_batch=2",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_trains_from_scratch_on_shapes(trained, shapes_dir):
    out, overrides = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 5 and all(np.isfinite(losses))
    # falling: the later half below the start
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses

    from simpledet.engine.checkpoint import load_weights

    model = build_model(load_config(QUICKSTART, overrides))
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    # the BN statistics moved off their initial (0, 1) during training
    bn = model.backbone.layer1[0].bn1
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) <= 100
    assert torch.isfinite(det["boxes"]).all() and ((det["labels"] >= 1) & (det["labels"] <= 4)).all()
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):  # through Detector.check_inputs: 0-255 pixels refused
        model([torch.rand(3, 64, 64) * 255])
