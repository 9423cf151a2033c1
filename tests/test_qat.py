"""INT8 quantisation-aware training (simpledet/engine/qat.py) against SimpleDet's Quantization_int8
formulas, computed here by hand in NumPy; the quantiser switched off gives the float model; a QAT run
trains through the CLI and exports to ONNX with QuantizeLinear / DequantizeLinear."""

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model
from simpledet.cli import main
from simpledet.config import load_config
from simpledet.engine.checkpoint import load_weights
from simpledet.engine.qat import QATConfig, float_state_dict_keys, prepare_qat, quantizers
from simpledet.errors import UserError

from .conftest import REPO
from .helpers import shapes_overrides, small_config

QAT_CONFIG = REPO / "configs/quickstart/faster_r18c4_int8_shapes.py"
FLOAT_CONFIG = REPO / "configs/quickstart/faster_r18c4_shapes.py"


def simpledet_weight(w: np.ndarray) -> np.ndarray:
    """quantization_int8-inl.h, is_weight: unit = max|w| / 127, round(w / unit) * unit."""
    unit = np.abs(w).max() / 127
    return np.round(w / unit) * unit


def simpledet_act(x: np.ndarray, threshold: float) -> np.ndarray:
    unit = threshold / 127
    return np.round(np.clip(x, -threshold, threshold) / unit) * unit


def test_weights_and_activations_quantise_as_simpledet():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False))
    weight = model[0].weight.detach().clone().numpy()
    prepare_qat(model, QATConfig(delay=0, ema_decay=0.99))
    x1 = torch.randn(1, 2, 5, 5)
    x2 = 3 * torch.randn(1, 2, 5, 5)  # a larger max: the EMA moves 1% of the way towards it
    model.train()
    y1, y2 = model(x1), model(x2)
    w_q = torch.from_numpy(simpledet_weight(weight)).float()
    t1 = float(np.abs(x1.numpy()).max())
    t2 = 0.99 * t1 + 0.01 * float(np.abs(x2.numpy()).max())
    assert t2 < float(x2.abs().max())  # so the second step clips
    for x, t, y in ((x1, t1, y1), (x2, t2, y2)):
        want = nn.functional.conv2d(torch.from_numpy(simpledet_act(x.numpy(), t)).float(), w_q)
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    # eval: the stored threshold t2, no update
    model.eval()
    with torch.no_grad():
        y3 = model(x1)
    want = nn.functional.conv2d(torch.from_numpy(simpledet_act(x1.numpy(), t2)).float(), w_q)
    torch.testing.assert_close(y3, want, rtol=1e-5, atol=1e-5)


def test_delay_keeps_the_first_steps_float():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3))
    reference = nn.Sequential(nn.Conv2d(2, 3, 3))
    reference.load_state_dict(model.state_dict())
    prepare_qat(model, QATConfig(delay=2))
    x = torch.randn(1, 2, 6, 6)
    model.train()
    assert torch.equal(model(x), reference(x)) and torch.equal(model(x), reference(x))  # steps 0 and 1
    assert not torch.equal(model(x), reference(x))  # step 2 quantises
    assert all(float(q.fake_quant.scale) > 0 for q in quantizers(model))


@pytest.mark.parametrize("field,value", [("delay", -1), ("ema_decay", 1.0), ("layers", ("conv", "pool"))])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(UserError, match=f"qat.{field}"):
        prepare_qat(nn.Sequential(nn.Conv2d(1, 1, 1)), QATConfig(**{field: value}))


@pytest.fixture(scope="module")
def float_and_qat(shapes_dir):
    """The quick-start C4 detector with frozen BN in float, and its QAT copy (delay 1) holding the same
    weights through float_state_dict_keys."""
    extra = ("model.backbone.norm=frozen_bn",)
    torch.manual_seed(0)
    float_model = build_model(small_config(shapes_dir, *extra, config=FLOAT_CONFIG))
    qat_model = build_model(small_config(shapes_dir, *extra, "qat.delay=1", config=QAT_CONFIG))
    qat_model.load_state_dict(float_state_dict_keys(float_model.state_dict(), qat_model), strict=False)
    return float_model, qat_model


def test_quantisation_off_gives_the_float_model(float_and_qat):
    float_model, qat_model = float_and_qat
    images = [torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(1))]
    float_model.eval(), qat_model.eval()
    with torch.no_grad():
        want = float_model(images)[0]
        got = qat_model(images)[0]  # no quantised step has run: every quantiser is off
    assert len(want["boxes"]) > 0
    # the frozen BN runs after its conv instead of folded into it: the same up to float rounding
    torch.testing.assert_close(got["boxes"], want["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got["scores"], want["scores"], rtol=1e-4, atol=1e-5)
    assert torch.equal(got["labels"], want["labels"])

    # training step 0 (within the delay): the float losses, drawn with the same samples
    targets = [dict(boxes=torch.tensor([[10.0, 12.0, 60.0, 70.0]]), labels=torch.tensor([2]))]
    float_model.train(), qat_model.train()
    torch.manual_seed(5)
    want_losses = float_model(images, targets)
    torch.manual_seed(5)
    got_losses = qat_model(images, targets)
    for name, value in want_losses.items():
        torch.testing.assert_close(got_losses[name], value, rtol=1e-4, atol=1e-6)
    torch.manual_seed(5)
    quantised = qat_model(images, targets)  # step 1: 8-bit
    assert any(not torch.allclose(quantised[k], want_losses[k]) for k in want_losses)
    assert all(float(q.fake_quant.scale.min()) > 0 for q in quantizers(qat_model))


@pytest.fixture(scope="module")
def qat_run(shapes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "run"
    iters = 16
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=2", "train.lr=0.02", "train.lr_reference_batch=2",
        "train.clip_grad_norm=10", "train.warmup_iters=4", f"train.checkpoint_every={iters}", "train.log_every=4",
        "qat.delay=4"]
    assert main(["train", str(QAT_CONFIG), "--out", str(out), *overrides]) == 0
    return out


def test_qat_trains_through_the_cli(qat_run):
    records = [json.loads(line) for line in (qat_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 4 and all(np.isfinite(losses))
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses


@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_ALL_EXPORTS") != "1",
                    reason="SIMPLEDET_TEST_ALL_EXPORTS=1 exports the QAT model too")
def test_qat_model_exports_to_onnx_with_quantize_nodes(qat_run, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    from simpledet.deploy.onnx_runtime import OnnxDetector

    out = tmp_path / "qat.onnx"
    assert main(["export", "--weights", str(qat_run / "model_final.safetensors"), "--format", "onnx",
                 "--out", str(out)]) == 0
    graph = onnx.load(str(out)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") >= 20 and ops.count("DequantizeLinear") >= 20, sorted(set(ops))
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(3))
    got = OnnxDetector(out)(image)
    model = build_model(load_config(qat_run / "config.json"), load_pretrained=False)
    load_weights(model, qat_run / "model_final.safetensors")  # its step count switches the quantisers on
    model.eval()
    with torch.no_grad():
        want = model([image])[0]
    top = min(5, len(want["scores"]))
    assert top > 0
    # 8-bit steps amplify float rounding: a value on a rounding boundary may go either way in ORT
    torch.testing.assert_close(got["scores"][:top], want["scores"][:top], rtol=0, atol=5e-3)
    torch.testing.assert_close(got["boxes"][:top], want["boxes"][:top], rtol=0, atol=1.0)


def test_init_from_a_float_checkpoint_places_every_tensor(float_and_qat, tmp_path):
    from safetensors.torch import save_file

    from simpledet.weights.init_from import init_from

    float_model, qat_model = float_and_qat
    path = tmp_path / "float.safetensors"
    save_file({k: v.contiguous() for k, v in float_model.state_dict().items()}, str(path))
    report = init_from(qat_model, str(path))
    assert report.no_place == {} and not report.shape_differs
    assert torch.equal(qat_model.backbone.conv1.parametrizations.weight.original, float_model.backbone.conv1.weight)
