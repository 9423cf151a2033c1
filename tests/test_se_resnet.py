"""SE-ResNet v1b and the SE mask head (SimpleDet's models/se): numbers against MXNet, the config's
shape, and a slim SE Mask R-CNN trained from scratch through the CLI.

tests/fixtures/mxnet_made/se_* were computed by MXNet 1.9.1 with SimpleDet's own builder code
(tools/mxnet_se_fixtures.py): SEv2ResNetV1bFPN with two SE units per stage and MaskRcnnSe4convHead,
widths divided by 16, BN in inference mode with non-trivial statistics. The arrays go through the
SimpleDet checkpoint converter's renaming (simpledet_checkpoint.convert_arrays) into our modules."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.errors import UserError
from simpledet.modeling.backbones import resnet as resnet_module
from simpledet.modeling.backbones.se_resnet import SEResNetConfig
from simpledet.modeling.heads.mask_head import MaskHead

from .conftest import REPO
from .helpers import load_simpledet_arrays, mxnet_fixture, relative_error, shapes_overrides

QUICKSTART = REPO / "configs/quickstart/mask_se-r50_fpn_bn_scratch_shapes.py"
TOLERANCE = 1e-4  # max |ours - MXNet| / max |MXNet| per output
BROKEN = 1e-3  # what a real mistake gives at least


pytestmark = pytest.mark.usefixtures("one_thread")  # the nets are tiny


@pytest.fixture(scope="module")
def se_backbone():
    data, meta, arrays = mxnet_fixture("se_resnet_v1b")
    assert meta["units"] == [2, 2, 2, 2] and meta["div"] == 16
    with pytest.MonkeyPatch.context() as patch:  # a depth of two bottlenecks per stage, as the fixture's
        patch.setitem(resnet_module._ARCH, 26, ("bottleneck", (2, 2, 2, 2)))
        backbone = SEResNetConfig(depth=26, variant="v1b", norm="bn", freeze_at=0, base_width=64 // 16).build()
    holder = nn.Module()
    holder.backbone = backbone
    load_simpledet_arrays(holder, arrays)
    image = torch.from_numpy(data["image"].astype(np.float32))
    x = (image - torch.from_numpy(data["mean"]).view(1, 3, 1, 1)) / torch.from_numpy(data["std"]).view(1, 3, 1, 1)
    return backbone, x, data


def test_se_resnet_matches_mxnet(se_backbone):
    backbone, x, data = se_backbone
    assert backbone.layer1[0].se.fc1.weight.shape == (1, 4, 1, 1)  # 64 -> 16, divided by 16
    with torch.no_grad():
        out = backbone(x)
    for name in ("c2", "c3", "c4", "c5"):
        assert relative_error(out[name], data[name]) < TOLERANCE, name


def test_the_comparison_has_teeth(se_backbone):
    """Without its excitations the network is measurably off."""
    backbone, x, data = se_backbone
    saved = [(block, block.se) for block in backbone.modules() if hasattr(block, "se") and block.se is not None]
    try:
        for block, _ in saved:
            block.se = None
        with torch.no_grad():
            assert relative_error(backbone(x)["c5"], data["c5"]) > BROKEN
    finally:
        for block, se in saved:
            block.se = se


def test_se_mask_head_matches_mxnet():
    data, meta, arrays = mxnet_fixture("se_mask_head")
    rois = torch.from_numpy(data["rois"])
    holder = nn.Module()
    holder.roi_heads = nn.Module()
    holder.roi_heads.mask_head = MaskHead(in_channels=rois.shape[1], num_classes=4, num_convs=4, conv_dim=16, norm="bn",
                                          squeeze_excitation=True)
    load_simpledet_arrays(holder, arrays)
    with torch.no_grad():
        logits = holder.roi_heads.mask_head(rois)
    assert logits.shape == data["mask_logit"].shape
    assert relative_error(logits, data["mask_logit"]) < TOLERANCE


def test_se_config_is_simpledets():
    cfg = load_config(REPO / "configs" / "se" / "mask_se-r50v1b_fpn_bn_scratch_2x.py")
    model = cfg.model
    assert isinstance(model.backbone, SEResNetConfig) and model.backbone.se_reduction == 4
    assert (model.backbone.depth, model.backbone.variant, model.backbone.norm) == (50, "v1b", "syncbn")
    assert model.mask_head.squeeze_excitation and model.mask_head.norm == "syncbn"
    assert (cfg.train.lr, cfg.train.steps) == (0.04, (120000, 160000))


def test_se_needs_bottlenecks():
    with pytest.raises(UserError, match="bottleneck"):
        SEResNetConfig(depth=18, norm="bn", freeze_at=0, base_width=8).build()


def test_slim_se_mask_rcnn_trains(tmp_path, shapes_dir):
    """The quick-start SE Mask R-CNN (SE-ResNet-50 at quarter width, BN everywhere) from scratch:
    losses finite and falling, then well-formed detections with masks."""
    out = tmp_path / "run"
    iters = 30
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=2", "train.lr=0.02", "train.lr_reference_batch=2",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(losses))
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    model = build_model(load_config(QUICKSTART, shapes_overrides(shapes_dir))).eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["masks"]) <= 100
    assert det["masks"].shape[1:] == (1, 128, 128)
