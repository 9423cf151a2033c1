"""Distributed training and evaluation on the CPU with gloo, 2 processes spawned here (the same
torch.distributed environment torchrun sets up): DDP gradients, SyncBN statistics, sharded
evaluation, and an end-to-end `torchrun` run resumed on another number of processes. (A torchrun
group killed and restarted, resuming exactly on the same number: tests/test_faults.py.)"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from simpledet.data.coco import collate
from simpledet.modeling.norm import SyncBatchNorm2d, make_norm

from .helpers import QUICKSTART, shapes_overrides, small_config

WORLD = 2
# GroupNorm: no statistic spans the batch or differs between ranks
PER_IMAGE_NORM = ["model.backbone.norm=gn", "train.device=cpu", "train.batch_size=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn, args) -> None:
    """Each spawned process: torchrun's environment variables, then the process group from them."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from simpledet.engine import distributed

    distributed.init_from_env("cpu")
    try:
        fn(rank, *args)
    finally:
        distributed.destroy()


def _spawn(fn, *args) -> None:
    mp.spawn(_worker, args=(WORLD, _free_port(), fn, args), nprocs=WORLD, join=True)


# ------------------------------------------------------------------ 1. DDP gradients
def _one_image_step(trainer, index: int, model: nn.Module) -> None:
    images, targets = collate([trainer.dataset[index]])
    images, targets = trainer._to_device(images, targets)
    torch.manual_seed(123)  # the same proposal/RoI sampling draws for every image, in every process
    losses = model(images, targets)
    sum(losses.values()).backward()


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _ddp_grad_worker(rank: int, data_dir, out_dir, graphs: bool) -> None:
    from simpledet.engine.trainer import Trainer

    if graphs:  # train.cuda_graphs with the capture stood in: gradients come out of graph replays
        import simpledet.engine.trainer as trainer_module
        from simpledet.accel.cuda_graphs import enable_cuda_graphs
        from tests.graph_standin import FakeGraphs

        FakeGraphs(pytest.MonkeyPatch())
        trainer_module.enable_cuda_graphs = lambda model, n, device, **kw: enable_cuda_graphs(
            model, n, torch.device("cuda"), **kw)
    trainer = Trainer(small_config(data_dir, *PER_IMAGE_NORM, f"train.cuda_graphs={graphs}"), out_dir)
    assert ("dense_step" in vars(trainer.model)) == graphs  # replaced on the instance by a graph
    assert trainer.ddp_model.broadcast_buffers is False  # GroupNorm: no running statistics
    assert trainer.world_size == WORLD and trainer.total_batch == WORLD  # 1 image per process
    assert isinstance(trainer.ddp_model, nn.parallel.DistributedDataParallel)
    _one_image_step(trainer, rank, trainer.ddp_model)  # rank r trains on image r
    if rank == 0:
        torch.save(_grads(trainer.model), out_dir / "ddp_grads.pth")


@pytest.mark.parametrize("graphs", [False, True])
def test_ddp_step_equals_single_process_batch(tmp_path, shapes_dir, graphs):
    """The losses are normalised per batch (sampled anchors and RoIs of the whole batch), so one
    process with a 2-image batch does not compute the mean of per-image losses. DDP averages the
    gradients of the ranks' losses: with one image per rank that is exactly
    (grad L(image 0) + grad L(image 1)) / 2, which is what one process computing the gradient of
    the mean of the two single-image losses gets. That is the single-process side here, with the
    same random sampling draws per image (seeded before each forward) on both sides and GroupNorm
    so no statistic spans the batch. With train.cuda_graphs (the capture stood in by
    tests/graph_standin.py), the gradients of the captured parts come out of the replays'
    autograd Function, and DDP must average those too."""
    from simpledet.engine.trainer import Trainer

    _spawn(_ddp_grad_worker, shapes_dir, tmp_path, graphs)
    ddp = torch.load(tmp_path / "ddp_grads.pth", weights_only=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(small_config(shapes_dir, *PER_IMAGE_NORM), tmp_path / "single")
        assert trainer.world_size == 1 and trainer.ddp_model is trainer.model
        per_image = []
        for index in range(WORLD):
            trainer.model.zero_grad(set_to_none=True)
            _one_image_step(trainer, index, trainer.model)
            per_image.append(_grads(trainer.model))
    finally:
        torch.set_num_threads(threads)
    expected = {n: sum(g[n] for g in per_image) / WORLD for n in per_image[0]}
    assert ddp.keys() == expected.keys() and len(expected) > 10
    flat_a = torch.cat([ddp[n].flatten() for n in expected])
    flat_b = torch.cat([expected[n].flatten() for n in expected])
    assert flat_b.norm() > 0
    assert (flat_a - flat_b).norm() <= 1e-5 * flat_b.norm()
    for n in expected:  # and parameter by parameter
        assert (ddp[n] - expected[n]).norm() <= 1e-5 * expected[n].norm() + 1e-9, n


@pytest.mark.parametrize("norm, broadcast", [("frozen_bn", False), ("syncbn", False), ("gn", False), ("bn", True)])
def test_ddp_broadcasts_buffers_only_for_per_rank_batch_norm_statistics(norm, broadcast):
    from simpledet.engine.trainer import has_per_rank_statistics

    model = nn.Sequential(nn.Conv2d(3, 8, 3), make_norm(norm, 8), nn.ReLU())
    assert has_per_rank_statistics(model) is broadcast


# ------------------------------------------------------------------ 2. SyncBN
def _syncbn_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 6, generator=gen) * 3 + 1
    w = torch.randn(4, 3, 5, 6, generator=gen)
    weight, bias = torch.rand(3, generator=gen) + 0.5, torch.randn(3, generator=gen)
    return x, w, weight, bias


def _syncbn_worker(rank: int, out_dir) -> None:
    x, w, weight, bias = _syncbn_inputs()
    bn = make_norm("syncbn", 3)
    assert isinstance(bn, SyncBatchNorm2d)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    share = slice(2 * rank, 2 * rank + 2)  # rank r holds images 2r, 2r+1 of the whole batch
    outs = []
    for step in range(2):
        xr = (x[share] * (1 + step)).requires_grad_()
        out = bn(xr)
        (out * w[share]).sum().backward()
        outs.append((out.detach(), xr.grad))
    torch.save({"outs": outs, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
                "state": bn.state_dict()}, out_dir / f"syncbn_{rank}.pth")


def test_syncbn_matches_whole_batch_statistics(tmp_path):
    _spawn(_syncbn_worker, tmp_path)
    parts = [torch.load(tmp_path / f"syncbn_{r}.pth", weights_only=True) for r in range(WORLD)]

    x, w, weight, bias = _syncbn_inputs()
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    for step in range(2):
        xs = (x * (1 + step)).requires_grad_()
        out = bn(xs)
        (out * w).sum().backward()
        for r, part in enumerate(parts):
            got_out, got_grad = part["outs"][step]
            torch.testing.assert_close(got_out, out.detach()[2 * r:2 * r + 2], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got_grad, xs.grad[2 * r:2 * r + 2], rtol=1e-4, atol=1e-5)
    # the same parameter and buffer names, and the statistics of the whole batch
    for part in parts:
        assert part["state"].keys() == bn.state_dict().keys()
        for k, v in bn.state_dict().items():
            torch.testing.assert_close(part["state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    # each rank's parameter gradient is its share; DDP's sum over ranks / WORLD -> sum is the whole
    torch.testing.assert_close(parts[0]["weight_grad"] + parts[1]["weight_grad"], bn.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[0]["bias_grad"] + parts[1]["bias_grad"], bn.bias.grad, rtol=1e-4, atol=1e-5)


def test_syncbn_without_process_group_is_batchnorm():
    x, _, weight, bias = _syncbn_inputs()
    sync, plain = SyncBatchNorm2d(3), nn.BatchNorm2d(3)
    for m in (sync, plain):
        with torch.no_grad():
            m.weight.copy_(weight)
            m.bias.copy_(bias)
    assert torch.equal(sync(x), plain(x))
    sync.eval(), plain.eval()
    assert torch.equal(sync(x), plain(x))
    plain.load_state_dict(sync.state_dict())


# ------------------------------------------------------------------ 3. distributed evaluation
def _eval_args(data_dir, weights, out):
    return ["eval", str(QUICKSTART), "--weights", str(weights), "--out", str(out),
            *shapes_overrides(data_dir), "data.eval_batch_size=1", "train.device=cpu"]


def _eval_worker(rank: int, data_dir, weights, out) -> None:
    from simpledet.cli import main

    assert main(_eval_args(data_dir, weights, out)) == 0  # init_from_env finds the group already up


def test_distributed_eval_equals_single_process(tmp_path, shapes_dir):
    from simpledet.api import build_model
    from simpledet.cli import main
    from simpledet.engine.checkpoint import save_weights

    cfg = small_config(shapes_dir, "train.device=cpu")
    torch.manual_seed(0)
    model = build_model(cfg)  # untrained: near-uniform class scores, plenty of detections
    weights = tmp_path / "model.safetensors"
    save_weights(model, weights)

    _spawn(_eval_worker, shapes_dir, weights, tmp_path / "dist")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_eval_args(shapes_dir, weights, tmp_path / "single")) == 0
    finally:
        torch.set_num_threads(threads)

    single = json.loads((tmp_path / "single/detections.json").read_text())
    dist = json.loads((tmp_path / "dist/detections.json").read_text())
    assert len(single) > 0 and len(dist) == len(single)
    assert {r["image_id"] for r in single} == {r["image_id"] for r in dist}
    for a, b in zip(single, dist):  # same records in the same order
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3) and a["score"] == pytest.approx(b["score"], abs=1e-5)
    m_single = _flat(json.loads((tmp_path / "single/metrics.json").read_text()))
    m_dist = _flat(json.loads((tmp_path / "dist/metrics.json").read_text()))
    assert m_dist.keys() == m_single.keys() and len(m_single) >= 12
    for k, v in m_single.items():
        assert m_dist[k] == (pytest.approx(v, abs=1e-6) if isinstance(v, float) else v), k


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        return {k2: v2 for k, v in obj.items() for k2, v2 in _flat(v, f"{prefix}{k}.").items()}
    if isinstance(obj, list):
        return {k2: v2 for i, v in enumerate(obj) for k2, v2 in _flat(v, f"{prefix}{i}.").items()}
    return {prefix: obj}


# ------------------------------------------------------------------ 4. torchrun end to end
def test_torchrun_train_then_resume_on_one_process(tmp_path, shapes_dir):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(QUICKSTART.parents[2]), OMP_NUM_THREADS="1")
    common = [str(QUICKSTART), "--out", str(out), *shapes_overrides(shapes_dir), "train.device=cpu",
              "train.batch_size=1", "train.checkpoint_every=2", "train.log_every=1", "train.warmup_iters=2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "simpledet", "train", *common, "train.max_iter=4"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("weights:") == 1  # rank 0 alone reports
    assert (out / "model_final.safetensors").exists()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.safetensors"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]  # one writer
    state = torch.load(out / "model_final.state.pth", weights_only=True)
    assert len(state["rng_ranks"]) == WORLD

    # resume on one process (no torchrun): same iteration count, same lr schedule, 2 more steps
    resumed = subprocess.run([sys.executable, "-m", "simpledet", "train", *common, "train.max_iter=6", "--resume"],
                             env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    # lr: total batch 2 under torchrun, 1 alone (the linear scaling rule sees the real batch)
    assert records[3]["lr"] == pytest.approx(2 * records[4]["lr"])
