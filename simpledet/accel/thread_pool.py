"""Thread pools for torch operators that use one thread each (torchvision's CPU RoIAlign, NMS).

torch's operators release the GIL, so a few Python threads can run such kernels at once. Each
pool thread runs its own operators single-threaded: otherwise each would start an OpenMP team of
torch.get_num_threads() for the kernels' zero-fills and copies, more running threads than cores,
and every later parallel operator of the step (batch norm, the SGD update) would wait on
descheduled threads."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (process id, workers): a forked child makes its own


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of `workers` single-threaded threads, made on first use."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = _single_threaded_pool(workers)
    return _pools[key]


def run_in_threads(work, parts: list, workers: int) -> list:
    """[work(part) for part in parts], on a pool of `workers` threads."""
    return list(thread_pool(workers).map(work, parts))


def _single_threaded_pool(workers: int) -> ThreadPoolExecutor:
    """torch.set_num_threads sets the calling thread's OpenMP and MKL thread counts, but also a
    process-wide default; each pool thread sets 1 for itself, and the caller's count is set again
    once all of them have."""
    count = torch.get_num_threads()
    ready = threading.Barrier(workers + 1)

    def single_threaded() -> None:
        torch.get_num_threads()  # torch's lazy per-thread set-up first, or it would undo the 1
        torch.set_num_threads(1)
        ready.wait()

    pool = ThreadPoolExecutor(workers, thread_name_prefix="simpledet", initializer=single_threaded)
    started = [pool.submit(int) for _ in range(workers)]  # each submit starts a thread, up to workers
    ready.wait()
    for future in started:
        future.result()
    torch.set_num_threads(count)  # the process-wide default and this thread's count, as they were
    return pool
