"""SimpleDet zoo checkpoints -> our detectors (simpledet.weights.simpledet_zoo).

For every manifest of SimpleDet's parameter names (../shared/fixtures/simpledet/detectors/) that
has a config of ours: a synthetic checkpoint with exactly the manifest's names, shaped as SimpleDet's
layout implies from our parameter shapes, converts with every parameter of our model placed."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet.config import load_config
from simpledet.errors import UserError
from simpledet.weights.simpledet_zoo import (
    Rule, _bbox_delta, _fc, _rpn_cls, convert_arrays, convert_simpledet_checkpoint, resolve_name,
    simpledet_shape)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
DETECTORS = FIXTURES / "simpledet" / "detectors"

MANIFESTS = sorted(str(p.relative_to(DETECTORS).with_suffix("")) for p in DETECTORS.rglob("*.json")
                   if (REPO / "configs" / p.relative_to(DETECTORS).with_suffix(".py")).is_file()) \
    if DETECTORS.is_dir() else []

needs_fixtures = pytest.mark.skipif(not DETECTORS.is_dir(), reason=f"fixtures absent: {DETECTORS}")

_SHAPE_CACHE: dict[str, dict[str, tuple[int, ...]]] = {}


def model_shapes(config: str) -> dict[str, tuple[int, ...]]:
    if config not in _SHAPE_CACHE:
        cfg = load_config(REPO / "configs" / f"{config}.py")
        with torch.device("meta"):
            model = cfg.model.build()
        _SHAPE_CACHE[config] = {k: tuple(v.shape) for k, v in model.state_dict().items()
                                if not k.endswith("num_batches_tracked")}
    return _SHAPE_CACHE[config]


def synthetic(names: list[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Zero arrays (no memory: broadcast) named as the manifest, shaped as SimpleDet's layout."""
    out = {}
    for name in names:
        rule = resolve_name(name, shapes)
        if isinstance(rule, Rule):
            shape = simpledet_shape(name, rule, shapes[rule.key])
        elif isinstance(rule, str):
            shape = (1, 4)
        else:
            pytest.fail(f"SimpleDet array {name!r} maps to nothing in our model")
        out[name] = np.broadcast_to(np.float32(0), shape)
    return out


def _manifest_mismatch(names: list[str], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Manifests whose names describe a network our config of that name does not build (each
    checked against SimpleDet's own config of that name): fixture errors, reported, not converted."""
    def units(pattern, keys):
        return max([int(m.group(1)) for k in keys for m in [re.match(pattern, k)] if m] or [0])

    theirs = units(r"^stage3_unit(\d+)_", names)
    ours = units(r"^(?:backbone\.|backbone\.body\.)layer3\.(\d+)\.", shapes) + 1
    if theirs != ours:
        return (f"manifest's backbone has {theirs} stage-3 units, the depth its config name (and SimpleDet's "
                f"config: depth / get_backbone(..., depth)) gives has {ours}: fixture to regenerate")
    if any(k.endswith("final_bn.weight") for k in shapes) and any("_sc_bn_" in n for n in names):
        return ("manifest lists stageN_unit1_sc_bn_* (ResNet v1 shortcut BN) for a ResNet v2 config: mxnext's "
                "resnet_v2 shortcut is a bare conv: fixture to regenerate")
    has_fpn_names = any(re.match(r"^P\d_lateral_weight$", n) for n in names)
    has_fpn = any(k.startswith("neck.lateral_convs.") for k in shapes)
    if has_fpn_names and not has_fpn:
        return ("manifest lists FPN neck names (P*_lateral, rpn_conv_cls, anchor_stride*) but SimpleDet's "
                "config of this name and ours build a C4 / C5-red network (RpnHead: rpn_conv_3x3, "
                "rpn_cls_logit): fixture to regenerate")
    if any(re.match(r"^bbox_fc1_(1st|2nd|3rd)_bias$", n) for n in names) and \
            "roi_heads.stages.0.box_head.fcs.0.bias" not in shapes:
        return ("SimpleDet's cascade 2fc heads have biases (models/cascade_rcnn/builder.py: "
                "bbox_fc1_<stage>_bias); our cascade configs set MLPHeadConfig(fc_bias=False): config to fix")
    return None


@needs_fixtures
@pytest.mark.parametrize("config", MANIFESTS)
def test_manifest_converts_every_parameter(config):
    manifest = json.loads((DETECTORS / f"{config}.json").read_text())
    names = list(manifest["arg"]) + list(manifest["aux"])
    shapes = model_shapes(config)
    reason = _manifest_mismatch(names, shapes)
    if reason:
        pytest.xfail(reason)
    report = convert_arrays(synthetic(names, shapes), shapes, config)
    assert set(report.state) == set(shapes), set(shapes) ^ set(report.state)
    for key, array in report.state.items():
        assert tuple(array.shape) == shapes[key], key
    # every manifest name is placed or a documented skip
    placed = set(report.origin.values())
    for name in names:
        assert name in placed or name in report.skipped, name
    for name, why in report.skipped.items():
        assert name.startswith(("anchor_stride", "student_hint", "teacher_")), (name, why)
    # the only parameters not read from the checkpoint: biases SimpleDet's convs lack (DCN offsets, C5-red)
    assert all(k.endswith(("offset_conv.bias", "neck.reduce.bias")) for k in report.initialised)


def test_manifests_found():
    if not DETECTORS.is_dir():
        pytest.skip("fixtures absent")
    assert len(MANIFESTS) >= 40


def test_rpn_softmax_to_sigmoid():
    """sigmoid(our logit) == SimpleDet's softmax foreground probability, on a random input."""
    rng = np.random.default_rng(0)
    a, c, h, w = 3, 8, 5, 6
    weight = rng.normal(size=(2 * a, c, 1, 1)).astype(np.float32)
    bias = rng.normal(size=(2 * a,)).astype(np.float32)
    x = torch.from_numpy(rng.normal(size=(1, c, h, w)).astype(np.float32))
    # SimpleDet: conv -> reshape (N, 2, A*H, W) -> softmax(axis=1) -> Proposal reads [:, A:] as fg
    logits = torch.nn.functional.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias))
    prob = torch.softmax(logits.reshape(1, 2, a * h, w), dim=1).reshape(1, 2 * a, h, w)[:, a:]
    ours_w = _rpn_cls(weight, (a, c, 1, 1))
    ours_b = _rpn_cls(bias, (a,))
    assert ours_w.shape == (a, c, 1, 1) and ours_b.shape == (a,)
    ours = torch.sigmoid(torch.nn.functional.conv2d(x, torch.from_numpy(ours_w), torch.from_numpy(ours_b)))
    torch.testing.assert_close(ours, prob, rtol=1e-5, atol=1e-6)


def test_class_agnostic_takes_foreground_half():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(8, 16)).astype(np.float32)
    bias = rng.normal(size=(8,)).astype(np.float32)
    np.testing.assert_array_equal(_bbox_delta(weight, (4, 16)), weight[4:8])
    np.testing.assert_array_equal(_bbox_delta(bias, (4,)), bias[4:8])
    per_class = rng.normal(size=(324, 16)).astype(np.float32)
    np.testing.assert_array_equal(_bbox_delta(per_class, (324, 16)), per_class)


def test_fc1_conv_to_linear_same_output():
    """bbox_fc1 is a 1x1 conv over the RoI feature reshaped (N, C*7*7, 1, 1): our Linear on
    torch.flatten gives the same."""
    rng = np.random.default_rng(2)
    c = 4
    feat = torch.from_numpy(rng.normal(size=(2, c, 7, 7)).astype(np.float32))
    weight = rng.normal(size=(10, c * 49, 1, 1)).astype(np.float32)
    mx = torch.nn.functional.conv2d(feat.reshape(2, c * 49, 1, 1), torch.from_numpy(weight)).flatten(1)
    ours = torch.nn.functional.linear(torch.flatten(feat, 1), torch.from_numpy(_fc(weight, (10, c * 49))))
    torch.testing.assert_close(ours, mx)


def test_unmapped_and_misshaped_fail_with_name():
    shapes = {"rpn.head.conv.weight": (4, 4, 3, 3), "rpn.head.conv.bias": (4,)}
    with pytest.raises(UserError, match="fcos_thing_weight"):
        convert_arrays({"fcos_thing_weight": np.zeros((1,), np.float32)}, shapes)
    with pytest.raises(UserError, match="rpn_conv_weight"):
        convert_arrays({"rpn_conv_weight": np.zeros((4, 4, 1, 1), np.float32)}, shapes)
    with pytest.raises(UserError, match="rpn.head.conv.bias"):
        convert_arrays({"rpn_conv_weight": np.zeros((4, 4, 3, 3), np.float32)}, shapes)


@needs_fixtures
def test_convert_checkpoint_end_to_end(tmp_path):
    """A real .params (arg:/aux:) through convert_simpledet_checkpoint into safetensors."""
    from simpledet.engine.checkpoint import read_state_dict
    from simpledet.weights.mxnet_format import write_ndarray_file

    config = "retina_r50v1_fpn_1x"
    manifest = json.loads((DETECTORS / f"{config}.json").read_text())
    shapes = model_shapes(config)
    arrays = synthetic(manifest["arg"] + manifest["aux"], shapes)
    aux = set(manifest["aux"])
    rng = np.random.default_rng(3)
    params = {}
    for name, a in arrays.items():
        value = np.full(a.shape, rng.uniform(0.5, 1.5), np.float32)
        params[("aux:" if name in aux else "arg:") + name] = value
    src = tmp_path / "retina-0006.params"
    write_ndarray_file(src, params)
    dst = tmp_path / "retina.safetensors"
    summary = convert_simpledet_checkpoint(src, REPO / "configs" / f"{config}.py", dst)
    assert "placed" in summary
    state = read_state_dict(dst)
    assert torch.equal(state["neck.p7_conv.weight"], torch.from_numpy(params["arg:P7_conv_weight"]))
    assert torch.equal(state["backbone.layer1.0.bn1.running_var"],
                       torch.from_numpy(params["aux:stage1_unit1_bn1_moving_var"]))
    assert json.loads(dst.with_suffix(".json").read_text())["config"]


def _candidate_names() -> list[str]:
    """Every SimpleDet name a detector of ours may need: the manifests' names plus the backbone
    units of any depth (the manifests' own backbones are wrong for many configs, see above)."""
    names: dict[str, None] = {}
    if DETECTORS.is_dir():
        for path in sorted(DETECTORS.rglob("*.json")):
            manifest = json.loads(path.read_text())
            names.update(dict.fromkeys(manifest["arg"] + manifest["aux"]))
    bn = ("gamma", "beta", "moving_mean", "moving_var")
    for stage in range(1, 5):
        for unit in range(1, 37):
            for layer in ("conv1", "conv2", "conv3", "sc", "conv2_offset"):
                names.update(dict.fromkeys(f"stage{stage}_unit{unit}_{layer}_{s}" for s in ("weight", "bias")))
            for layer in ("bn1", "bn2", "bn3", "sc_bn"):
                names.update(dict.fromkeys(f"stage{stage}_unit{unit}_{layer}_{s}" for s in bn))
    for stem in ("bn_data", "bn0", "bn1"):
        names.update(dict.fromkeys(f"{stem}_{s}" for s in bn))
    for base in ("rpn_conv_3x3", "rpn_cls_logit", "rpn_bbox_delta", "bbox_fc1", "bbox_fc2"):
        names.update(dict.fromkeys(f"{base}_{s}" for s in ("weight", "bias")))
    return list(names)


@needs_fixtures
@pytest.mark.parametrize("config", MANIFESTS)
def test_simpledet_names_cover_our_model(config):
    """Whatever the manifest says: SimpleDet's naming scheme reaches every parameter of our model
    (C4 heads, v2, TridentNet, DCN included), and a checkpoint under those names converts."""
    shapes = model_shapes(config)
    chosen: dict[str, str] = {}
    for name in _candidate_names():
        rule = resolve_name(name, shapes)
        if isinstance(rule, Rule) and rule.key not in chosen:
            chosen[rule.key] = name
    missing = [k for k in shapes if k not in chosen and not k.endswith(("offset_conv.bias", "neck.reduce.bias"))]
    if missing and all(re.match(r"^roi_heads\.stages\.\d\.box_head\.fcs\.\d\.bias$", k) for k in missing):
        pytest.xfail("cascade head biases")
    assert not missing, missing[:5]
    arrays = synthetic(list(chosen.values()), shapes)
    report = convert_arrays(arrays, shapes, config)
    assert set(report.state) == set(shapes)
    assert all(k.endswith(("offset_conv.bias", "neck.reduce.bias")) for k in report.initialised)
