"""Training from scratch with norms everywhere (SimpleDet's config/scratch): the norm options of the
mask head, the RPN conv and TridentNet's per-branch norms, checked against plain functional
references; every option off by default, so the existing models keep their parameters and outputs.

tests/fixtures/scratch_norm_defaults.json holds `describe_defaults()` as computed by the plain heads
(mask head without norms, RPN head without norm, TridentNet with shared norms): the state_dict keys
and shapes of zoo and quick-start configs, and seeded outputs of the quick-start Mask R-CNN and
TridentNet. Regenerate it with `python -c "from tests.test_scratch_norms import write_defaults;
write_defaults()"` only when a default model is meant to change."""

import copy
import hashlib
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simpledet.config import load_config
from simpledet.errors import UserError
from simpledet.modeling.heads.mask_head import MaskHead, MaskHeadConfig
from simpledet.modeling.heads.rpn import RPNConfig, RPNHead
from simpledet.modeling.norm import make_norm

from .conftest import REPO

DEFAULTS = REPO / "tests" / "fixtures" / "scratch_norm_defaults.json"
KEY_CONFIGS = ("quickstart/mask_r18_fpn_shapes", "quickstart/tridentnet_r18c4_shapes", "mask_r50v1_fpn_1x",
               "resnet_v1b/tridentnet_r50v1bc4_c5_1x", "rpn_r50v1_fpn_1x", "resnet_v1b/faster_r50v1b_fpn_1x")
OUTPUT_CONFIGS = ("quickstart/mask_r18_fpn_shapes", "quickstart/tridentnet_r18c4_shapes")


def _keys_digest(config: str) -> dict:
    cfg = load_config(REPO / "configs" / f"{config}.py")
    with torch.device("meta"):
        model = cfg.model.build()
    lines = sorted(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return {"count": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def _seeded_outputs(config: str) -> dict:
    """A seeded model's detections on a seeded image, every score kept (sums and counts)."""
    cfg = load_config(REPO / "configs" / f"{config}.py")
    cfg.model.final_head.score_thresh = 0.0
    torch.manual_seed(0)
    model = cfg.model.build().eval()
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (det,) = model([image])
    out = {"count": len(det["boxes"]), "boxes": float(det["boxes"].double().sum()),
           "scores": float(det["scores"].double().sum())}
    if "masks" in det:
        out["masks"] = float(det["masks"].double().sum())
    return out


def describe_defaults() -> dict:
    return {"keys": {c: _keys_digest(c) for c in KEY_CONFIGS},
            "outputs": {c: _seeded_outputs(c) for c in OUTPUT_CONFIGS}}


def write_defaults() -> None:
    DEFAULTS.write_text(json.dumps(describe_defaults(), indent=1) + "\n")


def test_default_models_keep_their_parameters_and_outputs():
    expected = json.loads(DEFAULTS.read_text())
    for config in KEY_CONFIGS:
        assert _keys_digest(config) == expected["keys"][config], config
    for config in OUTPUT_CONFIGS:
        got, want = _seeded_outputs(config), expected["outputs"][config]
        assert got["count"] == want["count"] > 0, config
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-4), (config, name)


def test_options_default_off():
    assert MaskHeadConfig().norm is None and MaskHeadConfig().squeeze_excitation is False
    assert RPNConfig().conv_norm is None
    from simpledet.modeling.detectors.tridentnet import TridentConfig

    assert TridentConfig().shared_norms is True
    head = MaskHeadConfig(num_convs=2, conv_dim=8).build(4, 3)
    assert not any(re.search(r"\.(norms|se)\.|^(norms|se)\.", k) for k in head.state_dict())


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial affine parameters and running statistics for every norm in `module`."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                n = m.weight.numel()
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def _group_norm_numpy(x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    n, c, h, w = x.shape
    g = x.reshape(n, groups, -1).astype(np.float64)
    y = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)
    return y.reshape(n, c, h, w) * gamma[None, :, None, None] + beta[None, :, None, None]


def test_group_norm_is_simpledets():
    """mxnext's gn: 32 groups, a scale and shift per channel, eps 1e-5 (+1e-10), on a numpy reference."""
    norm = make_norm("gn", 64)
    assert isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == 32 and norm.weight.shape == (64,)
    _randomise(norm, 3)
    x = torch.randn(2, 64, 5, 6, generator=torch.Generator().manual_seed(4))
    want = _group_norm_numpy(x.numpy(), 32, norm.weight.detach().numpy(), norm.bias.detach().numpy(), 1e-5 + 1e-10)
    np.testing.assert_allclose(norm(x).detach().numpy(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_mask_head_conv_norm_relu_excite(norm):
    """Each conv (with bias) -> norm -> ReLU -> squeeze-excitation (mean, 1x1 down, ReLU6, 1x1 up,
    sigmoid, scale), then deconv + ReLU and the logits: SimpleDet's MaskRcnnSe4convHead order."""
    torch.manual_seed(0)
    head = MaskHead(in_channels=32, num_classes=2, num_convs=2, conv_dim=32, norm=norm,
                    squeeze_excitation=True).eval()
    _randomise(head, 5)
    assert head.se[0].fc1.weight.shape == (8, 32, 1, 1) and head.se[0].fc1.bias is None
    x = torch.randn(3, 32, 7, 7, generator=torch.Generator().manual_seed(6))
    y = x
    for conv, nm, se in zip(head.convs, head.norms, head.se):
        y = F.conv2d(y, conv.weight, conv.bias, padding=1)
        if norm == "bn":
            y = F.batch_norm(y, nm.running_mean, nm.running_var, nm.weight, nm.bias, False, 0.0, nm.eps)
        else:
            y = F.group_norm(y, 32, nm.weight, nm.bias, nm.eps)
        y = y.clamp_min(0)
        gate = F.conv2d(F.conv2d(y.mean((2, 3), keepdim=True), se.fc1.weight).clamp(0, 6), se.fc2.weight).sigmoid()
        y = y * gate
    y = F.conv_transpose2d(y, head.deconv.weight, head.deconv.bias, stride=2).clamp_min(0)
    want = F.conv2d(y, head.logits.weight, head.logits.bias)
    with torch.no_grad():
        torch.testing.assert_close(head(x), want, rtol=1e-5, atol=1e-5)


def test_rpn_conv_norm():
    """TridentNet's scratch RPN: 3x3 conv (bias) -> norm -> ReLU, then the 1x1 outputs."""
    torch.manual_seed(0)
    head = RPNHead(in_channels=16, num_anchors=3, conv_channels=32, norm="syncbn").eval()
    _randomise(head, 7)
    x = torch.randn(2, 16, 6, 5, generator=torch.Generator().manual_seed(8))
    t = F.conv2d(x, head.conv.weight, head.conv.bias, padding=1)
    t = F.batch_norm(t, head.norm.running_mean, head.norm.running_var, head.norm.weight, head.norm.bias, False, 0.0,
                     head.norm.eps).clamp_min(0)
    logits = F.conv2d(t, head.objectness.weight, head.objectness.bias).permute(0, 2, 3, 1).reshape(2, -1)
    with torch.no_grad():
        (got,), _ = head([x])
    torch.testing.assert_close(got, logits, rtol=1e-5, atol=1e-5)
    assert "norm.weight" not in RPNHead(in_channels=16, num_anchors=3, conv_channels=32).state_dict()


def _trident(shared: bool):
    from simpledet.modeling.backbones.resnet import ResNetConfig
    from simpledet.modeling.backbones.trident import TridentBackbone

    torch.manual_seed(0)
    resnet = ResNetConfig(depth=50, norm="bn", freeze_at=0, base_width=8, out_features=("c4",)).build()
    return TridentBackbone(resnet, dilations=(1, 2, 3), num_trident_blocks=None, test_branches=(0, 1, 2),
                           shared_norms=shared).eval()


def test_trident_branch_norms():
    """Unshared: branch 0 runs the blocks' own norms, branch b its copies (keys of SimpleDet's
    `_branch{b}` names); with the copies equal to the blocks' own norms, the shared network's output."""
    shared, own = _trident(True), _trident(False)
    assert set(own.state_dict()) - set(shared.state_dict()) == {
        k for k in own.state_dict() if k.startswith("branch_norms.")}
    assert "branch_norms.branch2.5.bn3.running_var" in own.state_dict()  # stage3_unit6_bn3_branch2
    assert not any(k.startswith("branch_norms.branch0") for k in own.state_dict())
    _randomise(shared, 9)
    own.load_state_dict(shared.state_dict(), strict=False)
    for b in (1, 2):  # copies equal to the blocks' own norms
        for i, norms in own.branch_norms[f"branch{b}"].items():
            for name, norm in norms.items():
                norm.load_state_dict(getattr(own.body.layer3[int(i)], name).state_dict())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        torch.testing.assert_close(own(x)["c4"], shared(x)["c4"])
        # a branch's own norms change only that branch: the model's output per branch (3 x batch)
        before = own(x)["c4"]
        with torch.no_grad():
            own.branch_norms["branch2"]["5"]["bn3"].bias.add_(1.0)
        after = own(x)["c4"]
    torch.testing.assert_close(after[:2], before[:2])
    assert not torch.allclose(after[2], before[2])
    # branch 2 by hand: the blocks with the branch's norms swapped in on a copy of the network
    reference = copy.deepcopy(own)
    for i, norms in own.branch_norms["branch2"].items():
        for name, norm in norms.items():
            setattr(reference.body.layer3[int(i)], name, copy.deepcopy(norm))
    with torch.no_grad():
        torch.testing.assert_close(after[2], reference(x)["c4"][2])


@pytest.mark.parametrize("field, value, message", [
    ("model.mask_head.norm", "batch", "model.mask_head.norm must be one of"),
    ("model.rpn.conv_norm", "layer", "model.rpn.conv_norm must be"),
])
def test_bad_norm_names_the_field(field, value, message):
    cfg = load_config(REPO / "configs" / "quickstart" / "mask_r18_fpn_shapes.py", [f"{field}={value}"])
    with pytest.raises(UserError, match=message):
        cfg.model.build()


@pytest.mark.parametrize("config", ["scratch/mask_r50v1b_fpn_gn_scratch_2x",
                                    "scratch/tridentnet_r50v1bc4_c5_syncbn_scratch_2x",
                                    "scratch/tridentnet_r50v1bc4_c5_syncbn_scratch_multiscale_2x"])
def test_scratch_configs_follow_simpledet(config):
    """The settings of SimpleDet's config/scratch files (read off them)."""
    cfg = load_config(REPO / "configs" / f"{config}.py")
    model, train = cfg.model, cfg.train
    assert model.backbone.pretrained is None and model.backbone.freeze_at == 0
    if "gn" in config:
        assert model.backbone.norm == model.neck.norm == model.roi_heads.box_head.norm == model.mask_head.norm == "gn"
        assert (train.lr, train.lr_reference_batch, train.steps) == (0.04, 16, (120000, 160000))
        assert train.warmup_factor == pytest.approx((0.01 / 3) / 0.02)
    else:
        assert model.backbone.norm == model.rpn.conv_norm == model.roi_heads.box_head.norm == "syncbn"
        assert model.trident.shared_norms is False and train.clip_grad_norm == 5
        assert train.lr == pytest.approx(0.03) and train.lr_reference_batch == 24
        assert train.steps == (80000, 106666) and train.warmup_factor == 0.0 and train.amp
        sizes = (640, 672, 704, 736, 768, 800) if "multiscale" in config else (800,)
        assert model.input.min_size == sizes and model.input.test_min_size in (None, 800)


def test_slim_gn_mask_rcnn_trains(tmp_path, shapes_dir):
    """The quick-start Mask R-CNN with GroupNorm everywhere, from scratch: losses finite and falling,
    then well-formed detections with masks."""
    from simpledet import build_model
    from simpledet.cli import main

    from .helpers import shapes_overrides

    config = REPO / "configs" / "quickstart" / "mask_r18_fpn_gn_scratch_shapes.py"
    out = tmp_path / "run"
    iters = 30
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}"]
    assert main(["train", str(config), "--out", str(out), *overrides]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(losses))
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    model = build_model(load_config(config, shapes_overrides(shapes_dir))).eval()
    assert isinstance(model.roi_heads.mask_head.norms[0], torch.nn.GroupNorm)
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["masks"]) <= 100
