"""Mixed precision, memory format and optimizer kernels: the training and inference switches of
engine/precision.py and engine/trainer.py, exercised on the CPU (bf16 autocast runs there)."""

import json
import logging

import pytest
import torch

from simpledet.api import Predictor
from simpledet.config import TrainConfig
from simpledet.engine.optimizer import build_optimizer
from simpledet.engine.precision import autocast_dtype
from simpledet.engine.trainer import Trainer
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
        opt = build_optimizer([model], cfg.train, 0.1, CPU)
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


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_a_first_step_skipped_by_the_loss_scaler_leaves_no_trace(impl):
    """torch's fused SGD leaves uninitialised momentum behind a first step that the fp16 loss
    scaler skips; ours starts from zero buffers: a skipped first step leaves the weights and the
    momentum untouched, and the next step is exactly plain SGD's first update."""
    a = torch.nn.Parameter(torch.zeros(64))
    b = torch.nn.Parameter(torch.zeros(64))
    module = torch.nn.Module()
    module.a, module.b = a, b
    opt = build_optimizer([module], small_config_stub(impl).train, 0.1, CPU)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for b_grad in (float("inf"), 1.0):  # an overflow in b: the whole first step is skipped
        opt.zero_grad()
        scaler.scale(a.sum() * 2.0 + b.sum() * b_grad).backward()
        scaler.step(opt)
        scaler.update()
        if b_grad != 1.0:
            assert not a.detach().any(), "a skipped step moved the weights"
            buffer = opt.state.get(a, {}).get("momentum_buffer")
            assert buffer is None or not buffer.any(), "a skipped step left momentum behind"
    # plain SGD's first step: lr 0.1 x (gradient 2 + weight decay 1e-4 x 0)
    torch.testing.assert_close(a.detach(), torch.full((64,), -0.2))
    torch.testing.assert_close(opt.state[a]["momentum_buffer"], torch.full((64,), 2.0))


def small_config_stub(impl: str):
    from simpledet.config import Config

    cfg = Config()
    cfg.train.optimizer_impl = impl
    return cfg


def test_unknown_optimizer_and_impl_are_named():
    with pytest.raises(UserError, match="train.optimizer_impl: 'adam'"):
        build_optimizer([torch.nn.Linear(2, 2)], small_config_stub("adam").train, 0.1, CPU)
    cfg = small_config_stub("fused")
    cfg.train.optimizer = "lamb"
    with pytest.raises(UserError, match="train.optimizer: 'lamb' is not one of \\['sgd', 'adamw'\\]"):
        build_optimizer([torch.nn.Linear(2, 2)], cfg.train, 0.1, CPU)


@pytest.mark.parametrize("impl", ["fused", "foreach", "for-loop"])
def test_adamw_is_a_config_choice_with_torchs_update(impl):
    """train.optimizer=adamw: torch's AdamW over the trainable parameters, with train.lr (as
    scaled), train.betas and train.weight_decay; every kernel choice gives the plain update."""
    cfg = small_config_stub(impl)
    cfg.train.optimizer, cfg.train.betas, cfg.train.weight_decay = "adamw", (0.8, 0.99), 0.05
    runs = []
    for build in (lambda model: build_optimizer([model], cfg.train, 0.01, CPU),
                  lambda model: torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.99), weight_decay=0.05,
                                                  foreach=False)):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
        model[0].bias.requires_grad_(False)  # frozen: left out
        opt = build(model)
        for step in range(3):
            loss = model(torch.randn(4, 5, generator=torch.Generator().manual_seed(step))).square().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        runs.append((opt, [p.detach().clone() for p in model.parameters()]))
    (ours, got), (_, expected) = runs
    assert isinstance(ours, torch.optim.AdamW) and len(ours.param_groups[0]["params"]) == 3
    assert ours.defaults["betas"] == (0.8, 0.99) and ours.defaults["weight_decay"] == 0.05
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_trains_with_adamw(tmp_path, shapes_dir):
    trainer = Trainer(small_config(shapes_dir, "train.max_iter=2", "train.optimizer=adamw", "train.lr=0.0002"),
                      tmp_path / "run")
    before = [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    trainer.train()
    after = [p.detach() for p in trainer.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    state = torch.load(tmp_path / "run" / "model_final.state.pth", weights_only=True)
    assert "exp_avg" in next(iter(state["optimizer"]["state"].values()))  # AdamW's state, saved for resuming


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


def test_loss_scale_is_checkpointed_and_restored(tmp_path, shapes_dir, monkeypatch):
    """The dynamic loss scale travels with the checkpoint: saved in its training state, restored
    on resume, and logged in metrics.jsonl. fp16 needs a GPU, so the CPU run gets an enabled
    scaler that doubles its scale at every finite step (the scaling arithmetic itself is torch's)."""
    real_scaler = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler",
                        lambda device, enabled=True: real_scaler(device, init_scale=64.0, growth_interval=1))
    extra = ["train.checkpoint_every=2", "train.warmup_iters=1"]
    trainer = Trainer(small_config(shapes_dir, "train.max_iter=2", *extra), tmp_path / "run")
    trainer.train()
    saved = torch.load(tmp_path / "run" / "model_final.state.pth", weights_only=True)["scaler"]
    assert saved["scale"] == trainer.scaler.get_scale() == 64.0 * 2 ** 2  # two finite steps
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert record["loss_scale"] == 256.0 and record["skipped_steps"] == 0
    resumed = Trainer(small_config(shapes_dir, "train.max_iter=3", *extra), tmp_path / "run", resume=True)
    assert resumed.scaler.get_scale() == 256.0
    resumed.train()
    assert resumed.scaler.get_scale() == 512.0
