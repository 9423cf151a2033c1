"""SimpleDet zoo checkpoints -> our detectors (simpledet.weights.simpledet_checkpoint).

For every config of ours that SimpleDet has, tests/fixtures/simpledet_manifests/<config>.json holds the
`arg` / `aux` names and shapes of SimpleDet's own test symbol (tools/simpledet_manifests.py, run with
MXNet on SimpleDet's config of that name): a synthetic checkpoint with exactly those names and shapes
converts with every parameter of our model placed, and the converter's model of SimpleDet's layouts
(`simpledet_shape`) gives SimpleDet's real shapes. The shared name manifests
(../shared/fixtures/simpledet/detectors/) are checked too; where one disagrees with SimpleDet's own
symbol, the test is an xfail that says how."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet.config import load_config
from simpledet.errors import UserError
from simpledet.weights import simpledet_families
from simpledet.weights.simpledet_checkpoint import (
    NO_BIAS,
    Target,
    bbox_delta_layout,
    convert_arrays,
    convert_simpledet_checkpoint,
    fc_layout,
    resolve_name,
    rpn_cls_layout,
    simpledet_shape,
)

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "tests" / "fixtures" / "simpledet_manifests"
FIXTURES = REPO.parent / "shared" / "fixtures"
DETECTORS = FIXTURES / "simpledet" / "detectors"

# configs of ours that are not SimpleDet's (quickstart toys, torchvision ports)
NOT_SIMPLEDET = ("quickstart/", "torchvision/")
OUR_CONFIGS = sorted(str(p.relative_to(REPO / "configs").with_suffix("")) for p in (REPO / "configs").rglob("*.py")
                     if p.name != "__init__.py")
MANIFESTS = sorted(str(p.relative_to(GENERATED).with_suffix("")) for p in GENERATED.rglob("*.json")
                   if (REPO / "configs" / p.relative_to(GENERATED).with_suffix(".py")).is_file())
SHARED = sorted(str(p.relative_to(DETECTORS).with_suffix("")) for p in DETECTORS.rglob("*.json")
                if (REPO / "configs" / p.relative_to(DETECTORS).with_suffix(".py")).is_file()) \
    if DETECTORS.is_dir() else []

needs_fixtures = pytest.mark.skipif(not DETECTORS.is_dir(), reason=f"fixtures absent: {DETECTORS}")

_SHAPE_CACHE: dict[str, dict[str, tuple[int, ...]]] = {}


def _manifest_tool():
    spec = importlib.util.spec_from_file_location("simpledet_manifests", REPO / "tools" / "simpledet_manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_shapes(config: str) -> dict[str, tuple[int, ...]]:
    if config not in _SHAPE_CACHE:
        cfg = load_config(REPO / "configs" / f"{config}.py")
        with torch.device("meta"):
            model = cfg.model.build()
        _SHAPE_CACHE[config] = {k: tuple(v.shape) for k, v in model.state_dict().items()
                                if not k.endswith("num_batches_tracked")}
    return _SHAPE_CACHE[config]


def generated(config: str) -> dict[str, tuple[int, ...]]:
    """SimpleDet's own names -> shapes (arg and aux) for `config`."""
    manifest = json.loads((GENERATED / f"{config}.json").read_text())
    return {name: tuple(shape) for part in ("arg", "aux") for name, shape in manifest[part].items()}


def synthetic(names: list[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Zero arrays (no memory: broadcast) named as the manifest, shaped as SimpleDet's layout."""
    out = {}
    for name in names:
        rule = resolve_name(name, shapes)
        if isinstance(rule, Target):
            shape = simpledet_shape(name, rule, shapes[rule.key])
        elif isinstance(rule, str):
            shape = (1, 4)
        else:
            pytest.fail(f"SimpleDet array {name!r} maps to nothing in our model")
        out[name] = np.broadcast_to(np.float32(0), shape)
    return out


def _check_report(report, names, shapes):
    assert set(report.state) == set(shapes), sorted(set(shapes) ^ set(report.state))[:5]
    for key, array in report.state.items():
        assert tuple(array.shape) == shapes[key], key
    placed = set(report.origin.values())
    for name in names:
        assert name in placed or name in report.skipped, name
    for name, why in report.skipped.items():
        assert name.startswith("anchor_stride") or any(re.match(p, name) for p, _ in simpledet_families.SKIP), \
            (name, why)
    # the only parameters not read from the checkpoint: biases SimpleDet's convs lack (DCN offsets,
    # C5-red, those the families name), whose weight came from an array that has no bias beside it
    for key in report.initialised:
        assert key.endswith(NO_BIAS), key
        weight = report.origin[key[: -len("bias")] + "weight"]
        assert weight[: -len("weight")] + "bias" not in names, key


def test_every_simpledet_config_of_ours_has_a_manifest():
    ours = [c for c in OUR_CONFIGS if not c.startswith(NOT_SIMPLEDET)]
    assert ours and sorted(ours) == MANIFESTS, sorted(set(ours) ^ set(MANIFESTS))


@pytest.mark.parametrize("config", MANIFESTS)
def test_simpledet_network_converts_every_parameter(config):
    """SimpleDet's own test network (names and shapes) -> every parameter of our config, shapes
    through the converter's layout transforms; nothing unmapped, nothing left over."""
    theirs = generated(config)
    shapes = model_shapes(config)
    for name, shape in theirs.items():
        rule = resolve_name(name, shapes)
        if isinstance(rule, str):
            continue
        assert isinstance(rule, Target), f"SimpleDet's {name} {shape} maps to nothing in our {config}"
        # a 2fc head is 1x1 convs in symbol/builder.py, fully-connected layers in some families' heads
        fc_as_linear = rule.layout is fc_layout and shape == shapes[rule.key]
        assert simpledet_shape(name, rule, shapes[rule.key]) == shape or fc_as_linear, \
            (name, shape, rule, shapes[rule.key])
    arrays = {name: np.broadcast_to(np.float32(0), shape) for name, shape in theirs.items()}
    report = convert_arrays(arrays, shapes, config)
    _check_report(report, list(theirs), shapes)


@pytest.mark.parametrize("config", MANIFESTS)
def test_simpledet_head_layouts(config):
    """The layouts the converter changes, as SimpleDet's symbol has them: RPN objectness 2A (softmax
    bg/fg) vs our A, box regression 2 x 4 (class-agnostic) or C x 4 vs our 4 or C x 4, C classes
    with background (C = num_classes + 1: 81 on COCO, 21 on VOC), bbox_fc* as 1x1 convs vs our Linear."""
    theirs = generated(config)
    shapes = model_shapes(config)
    classes = load_config(REPO / "configs" / f"{config}.py").model.num_classes + 1
    seen = set()
    for name, shape in theirs.items():
        rule = resolve_name(name, shapes)
        if not isinstance(rule, Target):
            continue
        ours = shapes[rule.key]
        if rule.layout is rpn_cls_layout:
            assert shape[0] == 2 * ours[0] and shape[1:] == ours[1:], (name, shape, ours)
            seen.add("rpn_cls")
        elif rule.layout is bbox_delta_layout and name.endswith("_weight"):
            assert (shape[0], ours[0]) in ((8, 4), (4 * classes, 4 * classes)), (name, shape, ours)
            seen.add("bbox_delta")
        elif re.match(r"^bbox_cls_logit(_\w+)?_weight$", name):
            assert shape[0] == ours[0] == classes, (name, shape, ours)
        elif re.match(r"^bbox_fc[12](_\w+)?_weight$", name):  # 1x1 convs, or fully-connected (DoublePred)
            assert (len(shape) == 4 and shape[2:] == (1, 1) and shape[:2] == ours) or shape == ours, \
                (name, shape, ours)
        elif re.match(r"^(cls|bbox)_pred_weight$", name):  # RetinaNet: 9 anchors x 80 classes / 4 deltas
            assert shape[0] == ours[0] == 9 * ((classes - 1) if name.startswith("cls") else 4), (name, shape, ours)
    two_stage = any(k.startswith("rpn.") for k in shapes)
    # SimpleDet's R-CNN box regression (DoublePred's two, bbox_reg_delta1 / 2, are per class as ours)
    rcnn = any(re.match(r"^bbox_reg_delta(_(1st|2nd|3rd))?_weight$", name) for name in theirs)
    assert seen == ({"rpn_cls"} if two_stage else set()) | ({"bbox_delta"} if rcnn else set()), seen


def test_generated_manifests_come_from_simpledet():
    for config in MANIFESTS:
        manifest = json.loads((GENERATED / f"{config}.json").read_text())
        assert re.match(rf"^TuSimple/simpledet@[0-9a-f]{{40}} config/{re.escape(config)}\.py ", manifest["source"])


@needs_fixtures
@pytest.mark.parametrize("config", SHARED)
def test_shared_manifest_converts_every_parameter(config):
    """The shared names-only manifest: converts, or (xfail) says how it differs from SimpleDet's own
    test symbol of that config (tests/fixtures/simpledet_manifests/)."""
    manifest = json.loads((DETECTORS / f"{config}.json").read_text())
    names = list(manifest["arg"]) + list(manifest["aux"])
    if (GENERATED / f"{config}.json").is_file():
        diff = _manifest_tool().differences(names, list(generated(config)))
        if diff:
            pytest.xfail(f"shared fixture disagrees with SimpleDet's config/{config}.py test symbol "
                         f"(tests/fixtures/simpledet_manifests/{config}.json): " + "; ".join(diff))
    shapes = model_shapes(config)
    report = convert_arrays(synthetic(names, shapes), shapes, config)
    _check_report(report, names, shapes)


@needs_fixtures
def test_shared_manifests_found():
    assert len(SHARED) >= 40


def test_manifest_differences_described():
    tool = _manifest_tool()
    ours = [f"stage3_unit{i}_conv1_weight" for i in range(1, 7)] + \
        ["stage1_unit1_conv1_weight", "rpn_conv_3x3_weight", "rpn_cls_logit_weight"]
    theirs = [f"stage3_unit{i}_conv1_weight" for i in range(1, 24)] + \
        ["stage1_unit1_conv1_weight", "P2_lateral_weight", "rpn_conv_cls_weight", "stage1_unit1_sc_bn_gamma",
         "anchor_stride4"]
    text = "; ".join(tool.differences(theirs, ours))
    assert "shared lists 23 stage3 units, SimpleDet's config builds 6" in text
    assert "FPN" in text and "rpn_cls_logit, rpn_conv_3x3" in text
    assert "sc_bn" in text and "anchor_stride4" in text
    assert tool.differences(ours, list(reversed(ours))) == []


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
    ours_w = rpn_cls_layout(weight, (a, c, 1, 1))
    ours_b = rpn_cls_layout(bias, (a,))
    assert ours_w.shape == (a, c, 1, 1) and ours_b.shape == (a,)
    ours = torch.sigmoid(torch.nn.functional.conv2d(x, torch.from_numpy(ours_w), torch.from_numpy(ours_b)))
    torch.testing.assert_close(ours, prob, rtol=1e-5, atol=1e-6)


def test_class_agnostic_takes_foreground_half():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(8, 16)).astype(np.float32)
    bias = rng.normal(size=(8,)).astype(np.float32)
    np.testing.assert_array_equal(bbox_delta_layout(weight, (4, 16)), weight[4:8])
    np.testing.assert_array_equal(bbox_delta_layout(bias, (4,)), bias[4:8])
    per_class = rng.normal(size=(324, 16)).astype(np.float32)
    np.testing.assert_array_equal(bbox_delta_layout(per_class, (324, 16)), per_class)


def test_fc1_conv_to_linear_same_output():
    """bbox_fc1 is a 1x1 conv over the RoI feature reshaped (N, C*7*7, 1, 1): our Linear on
    torch.flatten gives the same."""
    rng = np.random.default_rng(2)
    c = 4
    feat = torch.from_numpy(rng.normal(size=(2, c, 7, 7)).astype(np.float32))
    weight = rng.normal(size=(10, c * 49, 1, 1)).astype(np.float32)
    mx = torch.nn.functional.conv2d(feat.reshape(2, c * 49, 1, 1), torch.from_numpy(weight)).flatten(1)
    ours = torch.nn.functional.linear(torch.flatten(feat, 1), torch.from_numpy(fc_layout(weight, (10, c * 49))))
    torch.testing.assert_close(ours, mx)


def test_unmapped_and_misshaped_fail_with_name():
    shapes = {"rpn.head.conv.weight": (4, 4, 3, 3), "rpn.head.conv.bias": (4,)}
    with pytest.raises(UserError, match="fcos_thing_weight"):
        convert_arrays({"fcos_thing_weight": np.zeros((1,), np.float32)}, shapes)
    with pytest.raises(UserError, match="rpn_conv_weight"):
        convert_arrays({"rpn_conv_weight": np.zeros((4, 4, 1, 1), np.float32)}, shapes)
    with pytest.raises(UserError, match="rpn.head.conv.bias"):
        convert_arrays({"rpn_conv_weight": np.zeros((4, 4, 3, 3), np.float32)}, shapes)


def test_convert_checkpoint_end_to_end(tmp_path):
    """A real .params (arg:/aux:, SimpleDet's names and shapes) through convert_simpledet_checkpoint
    into safetensors; the layout changes checked on the values."""
    from simpledet.engine.checkpoint import read_state_dict
    from simpledet.weights.mxnet_format import write_ndarray_file

    config = "faster_r50v1_fpn_1x"
    manifest = json.loads((GENERATED / f"{config}.json").read_text())
    aux = set(manifest["aux"])
    rng = np.random.default_rng(3)
    params = {}
    for name, shape in list(manifest["arg"].items()) + list(manifest["aux"].items()):
        size = int(np.prod(shape))
        value = rng.uniform(0.5, 1.5, size=shape).astype(np.float32) if size <= 1 << 16 else \
            np.full(shape, rng.uniform(0.5, 1.5), np.float32)
        params[("aux:" if name in aux else "arg:") + name] = value
    src = tmp_path / "faster-0006.params"
    write_ndarray_file(src, params)
    dst = tmp_path / "faster.safetensors"
    summary = convert_simpledet_checkpoint(src, REPO / "configs" / f"{config}.py", dst)
    assert "placed" in summary and "anchor_stride4" in summary
    state = read_state_dict(dst)
    assert torch.equal(state["neck.output_convs.0.weight"], torch.from_numpy(params["arg:P2_conv_weight"]))
    assert torch.equal(state["backbone.layer1.0.bn1.running_var"],
                       torch.from_numpy(params["aux:stage1_unit1_bn1_moving_var"]))
    cls_w, cls_b = params["arg:rpn_conv_cls_weight"], params["arg:rpn_conv_cls_bias"]  # (6, 256, 1, 1): bg 0:3, fg 3:6
    torch.testing.assert_close(state["rpn.head.objectness.weight"], torch.from_numpy(cls_w[3:] - cls_w[:3]))
    torch.testing.assert_close(state["rpn.head.objectness.bias"], torch.from_numpy(cls_b[3:] - cls_b[:3]))
    assert torch.equal(state["roi_heads.box_head.fcs.0.weight"],
                       torch.from_numpy(params["arg:bbox_fc1_weight"].reshape(1024, 256 * 49)))
    assert torch.equal(state["roi_heads.box_predictor.bbox_pred.weight"],
                       torch.from_numpy(params["arg:bbox_reg_delta_weight"]))  # 81 x 4, per class
    assert json.loads(dst.with_suffix(".json").read_text())["config"]


def test_converted_checkpoint_evaluates_and_predicts(tmp_path, shapes_dir):
    """`simpledet convert simpledet`, then `eval` and `predict` (no config: the converted
    checkpoint records it) on the converted model, unchanged, from the command line."""
    from simpledet.cli import main
    from simpledet.weights.mxnet_format import write_ndarray_file

    config = REPO / "configs" / "faster_r50v1_fpn_1x.py"
    manifest = json.loads((GENERATED / "faster_r50v1_fpn_1x.json").read_text())
    rng = np.random.default_rng(0)
    params = {}
    for kind in ("arg", "aux"):
        for name, shape in manifest[kind].items():
            if name.endswith(("_gamma", "_moving_var")):
                value = np.ones(shape, np.float32)
            elif name.endswith(("_beta", "_moving_mean", "_bias")):
                value = np.zeros(shape, np.float32)
            else:  # small weights: finite activations through 50 layers
                value = (0.01 * rng.standard_normal(shape)).astype(np.float32)
            params[f"{kind}:{name}"] = value
    src, dst = tmp_path / "faster_r50v1_fpn_1x-0006.params", tmp_path / "converted.safetensors"
    write_ndarray_file(src, params)
    assert main(["convert", "simpledet", str(src), str(dst), "--config", str(config)]) == 0

    # the 80-class model against a ground truth with COCO's 80 categories (two shapes images)
    gt = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    images = gt["images"][:2]
    ids = {img["id"] for img in images}
    gt = {"images": images, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids],
          "categories": [{"id": i, "name": f"class{i}"} for i in range(1, 81)]}
    gt_path = tmp_path / "val80.json"
    gt_path.write_text(json.dumps(gt))
    small = ["model.input.test_min_size=128", "model.input.test_max_size=128", "train.device=cpu"]
    assert main(["eval", str(config), "--weights", str(dst), "--out", str(tmp_path / "eval"),
                 f"data.val.ann_file={gt_path}", f"data.val.image_dir={shapes_dir / 'val'}", "data.num_workers=0",
                 *small]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) >= {"AP", "AP50", "AR100"}
    image = shapes_dir / "val" / images[0]["file_name"]
    preds = tmp_path / "preds.json"
    overrides = [arg for o in small for arg in ("--set", o)]
    assert main(["predict", "--weights", str(dst), str(image), "--out", str(preds), *overrides]) == 0
    assert isinstance(json.loads(preds.read_text()), list)
