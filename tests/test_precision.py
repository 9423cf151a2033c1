"""Mixed precision, memory format and optimizer kernels: the training and inference switches of
engine/precision.py and engine/trainer.py, exercised on the CPU (bf16 autocast runs there)."""

import json
import logging

import pytest
import torch

from simpledet.api import Predictor
from simpledet.config import TrainConfig
from simpledet.engine.precision import autocast_dtype
from simpledet.engine.trainer import Trainer, make_optimizer
from simpledet.errors import UserError

from .helpers import small_config

CPU = torch.device("cpu")


def test_autocast_dtype_per_device(caplog):
    assert autocast_dtype(False, "float16", CPU) is None
    assert autocast_dtype(True, "bfloat16", CPU) == torch.bfloat16
    assert autocast_dtype(True, "float16", torch.device("cuda")) == torch.float16
    with caplog.at_level(logging.WARNING):
        assert autocast_dtype(True, "float16", CPU) is None  # the zoo's _fp16 configs still run on a CPU
    assert "float16 needs a GPU" in caplog.text
    with pytest.raises(UserError, match="train.amp_dtype: 'fp8'"):
        autocast_dtype(True, "fp8", CPU)


@pytest.mark.parametrize("impl", ["foreach", "for-loop"])
def test_optimizer_impls_make_the_same_update(impl):
    """fused and foreach batch the kernels of the plain per-parameter SGD, not its arithmetic."""
    def run(name):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
        cfg = small_config_stub(name)
        opt = make_optimizer([model], cfg, 0.1, CPU)
        for step in range(3):
            loss = model(torch.randn(4, 5, generator=torch.Generator().manual_seed(step))).square().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()], opt
    torch.manual_seed(0)
    initial = torch.nn.Linear(5, 7).weight.detach().clone()  # the first layer as run() builds it
    reference, fused_opt = run("fused")
    assert fused_opt.defaults["fused"] is True
    assert (reference[0] - initial).abs().max() > 1e-3  # the parameters did move
    other, other_opt = run(impl)
    assert other_opt.defaults["foreach"] is (impl == "foreach") and not other_opt.defaults["fused"]
    for a, b in zip(reference, other):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_loss_scaling_gets_an_sgd_whose_skipped_first_step_leaves_no_trace():
    """torch's fused SGD leaves uninitialised momentum behind a first step that the fp16 loss
    scaler skips; the optimizer made for loss scaling skips it cleanly: no state, unchanged
    weights, then exactly plain SGD's update."""
    def two_steps(optimizer_for):
        a = torch.nn.Parameter(torch.zeros(64))
        b = torch.nn.Parameter(torch.zeros(64))
        module = torch.nn.Module()
        module.a, module.b = a, b
        opt = optimizer_for(module)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for b_grad in (float("inf"), 1.0):  # an overflow in b: the whole step is skipped
            opt.zero_grad()
            scaler.scale(a.sum() * 2.0 + b.sum() * b_grad).backward()
            scaler.step(opt)
            scaler.update()
            if b_grad != 1.0:
                assert not a.detach().any(), "a skipped step moved the weights"
                state_after_skip = dict(opt.state)
        return a.detach(), state_after_skip

    expected = torch.full((64,), -0.2)  # one plain step: lr 0.1 x gradient 2
    ours, state = two_steps(lambda m: make_optimizer([m], small_config_stub("fused"), 0.1, CPU, loss_scaling=True))
    assert not state  # no momentum buffer was made by the skipped step
    torch.testing.assert_close(ours, expected)


def small_config_stub(impl: str):
    from simpledet.config import Config

    cfg = Config()
    cfg.train.optimizer_impl = impl
    return cfg


def test_unknown_optimizer_impl_is_named():
    with pytest.raises(UserError, match="train.optimizer_impl: 'adam'"):
        make_optimizer([torch.nn.Linear(2, 2)], small_config_stub("adam"), 0.1, CPU)


def test_bf16_channels_last_training_on_cpu(tmp_path, shapes_dir):
    """A bf16 autocast run with NHWC weights: the convolutions see bf16, the weights stay fp32
    (the master copy), losses are finite, and the checkpoint resumes."""
    extra = ["train.max_iter=2", "train.checkpoint_every=2", "train.amp=true", "train.amp_dtype=bfloat16",
             "train.channels_last=true", "train.warmup_iters=1"]
    cfg = small_config(shapes_dir, *extra)
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    seen = {}
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    conv.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype))
    trainer.train()
    assert seen["dtype"] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    resumed = Trainer(small_config(shapes_dir, *extra[1:], "train.max_iter=3"), tmp_path / "run", resume=True)
    assert resumed.start_iter == 2


def test_bf16_inference_returns_fp32(shapes_dir):
    """test.amp: the network runs in bf16, the detections come back as fp32."""
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    bf16 = Predictor(small_config(shapes_dir, "test.amp=true", "test.amp_dtype=bfloat16"), device="cpu")
    seen = {}
    bf16.model.backbone.register_forward_hook(lambda m, i, o: seen.update(dtype=next(iter(o.values())).dtype))
    out = bf16(image)
    assert seen["dtype"] == torch.bfloat16
    assert out["boxes"].dtype == torch.float32 and out["scores"].dtype == torch.float32


def test_compile_backbone_traces_and_trains(tmp_path, shapes_dir, monkeypatch):
    """train.compile_backbone: dynamo captures the backbone and training runs through it. The
    eager backend stands in for inductor (whose C++ build takes minutes on this CPU); what is
    tested is that our backbone code is traceable and the compiled module is what trains."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, **{**kw, "backend": "eager"}))
    torch._dynamo.reset()
    cfg = small_config(shapes_dir, "train.max_iter=2", "train.checkpoint_every=2", "train.compile_backbone=true")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.model.backbone._compiled_call_impl is not None
    counts = torch._dynamo.utils.counters
    counts.clear()
    trainer.train()
    assert counts["stats"]["unique_graphs"] >= 1
    assert (tmp_path / "run" / "model_final.safetensors").is_file()



def test_cudnn_benchmark_is_a_train_setting_that_a_cpu_run_leaves_alone(tmp_path, shapes_dir):
    """train.cudnn_benchmark (on by default, as MXNet's autotune was in SimpleDet) is applied only
    when training on a GPU; a CPU run does not touch torch's global cuDNN switch."""
    assert TrainConfig().cudnn_benchmark is True
    before = torch.backends.cudnn.benchmark
    Trainer(small_config(shapes_dir, "train.max_iter=1", "train.cudnn_benchmark=false"), tmp_path / "run")
    assert torch.backends.cudnn.benchmark == before
