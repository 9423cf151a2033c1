"""torch.distributed plumbing for `torchrun` launches: one process per GPU (or CPU slot).

`torchrun --nproc_per_node N -m simpledet train CONFIG` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init_from_env` turns them into a process group (NCCL for CUDA,
gloo for the CPU). Without WORLD_SIZE nothing is initialised and every helper here answers as
for a single process, so the single-process paths are untouched.

`torchrun --max-restarts K` starts the whole group again when a worker dies, with the same
command line and TORCHELASTIC_RESTART_COUNT one higher; `simpledet train` then resumes from the
newest checkpoint by itself (cli.py). Each restart's group meets under a store prefix of its own
(`restart_store`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from simpledet.api import resolve_device

log = logging.getLogger(__name__)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def is_distributed() -> bool:
    return get_world_size() > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def restart_count() -> int:
    """How many times torchrun has restarted this group (0: the first start, or no torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))


def restart_store(rank: int, world_size: int) -> dist.Store:
    """The store the process group meets in: MASTER_ADDR:MASTER_PORT, under the prefix
    `restart{N}` for torchrun's N-th restart. torchrun's agent hosts that store for the whole
    job (TORCHELASTIC_USE_AGENT_STORE), so a restarted group would otherwise find the keys of the
    group before it, and gloo would try to connect to the addresses of dead processes: the new
    group then hangs or fails in init_process_group. Without the agent's store, rank 0 hosts one."""
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent_hosts_it, timeout=default_pg_timeout)
    return dist.PrefixStore(f"restart{restart_count()}", store)


def init_from_env(device_name: str = "auto") -> torch.device:
    """Joins the process group that torchrun describes in the environment (when WORLD_SIZE is set)
    and returns this process's device: cuda:LOCAL_RANK on GPU, else the configured device."""
    device = resolve_device(device_name)
    if "WORLD_SIZE" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if backend == "nccl" else {}
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(backend=backend, store=restart_store(rank, world_size), rank=rank,
                                world_size=world_size, **kwargs)
        if get_rank() != 0:  # one copy of the log; warnings and errors still come from every rank
            logging.getLogger("simpledet").setLevel(logging.WARNING)
        log.info("process group: %s, world size %d", backend, get_world_size())
    return device


def destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (a collective: every rank waits for `src`)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's `obj` as a list on rank `dst` (None elsewhere); [obj] in a single process."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size() if get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_reduce_max_(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_reduce_mean_(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= get_world_size()
    return t


def average_gradients(module: torch.nn.Module) -> None:
    """All-reduce (mean) the gradients of a module that DDP does not wrap (distillation adapters)."""
    if not is_distributed():
        return
    for p in module.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            all_reduce_mean_(p.grad)
