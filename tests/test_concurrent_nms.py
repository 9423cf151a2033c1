"""Several NMS calls at once (the RPN's levels) give what the calls give one after another."""

import threading

import pytest
import torch
import torchvision

import simpledet.accel.concurrent_nms as nms_module
from simpledet.accel.concurrent_nms import concurrent_nms


def random_group(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xy = torch.rand(n, 2, generator=generator) * 300
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=generator) * 80], 1)
    return boxes, torch.rand(n, generator=generator)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_equals_the_calls_in_turn(threads, num_threads):
    threads(num_threads)
    g = torch.Generator().manual_seed(0)
    groups = [random_group(n, g) for n in (700, 0, 300, 1, 450)]
    expected = [torchvision.ops.nms(b, s, 0.6) for b, s in groups]
    ours = concurrent_nms(groups, 0.6)
    assert len(ours) == len(expected) and all(torch.equal(a, b) for a, b in zip(ours, expected))
    assert sum(len(k) for k in ours) > 300  # most boxes survive: the comparison has content


def test_the_calls_run_at_once_in_pool_threads(threads, monkeypatch):
    """With two threads, the first two calls meet at a barrier: they can only pass it if they run
    at the same time (one after another, the first would wait in vain)."""
    threads(2)
    meet = threading.Barrier(2, timeout=20)
    seen = []

    def meeting_nms(*args):
        seen.append(threading.get_ident())
        if len(seen) <= 2:
            meet.wait()
        return torchvision.ops.nms(*args)

    monkeypatch.setattr(nms_module, "nms", meeting_nms)
    g = torch.Generator().manual_seed(1)
    concurrent_nms([random_group(400, g) for _ in range(5)], 0.7)
    assert len(seen) == 5 and len(set(seen[:2])) == 2 and threading.get_ident() not in seen


def test_no_groups():
    assert concurrent_nms([], 0.5) == []


@pytest.mark.parametrize("num_threads", [1, 2])
def test_offsets_shift_each_groups_indices(threads, num_threads):
    threads(num_threads)
    g = torch.Generator().manual_seed(2)
    groups = [random_group(n, g) for n in (50, 0, 80)]
    plain = concurrent_nms(groups, 0.5)
    shifted = concurrent_nms(groups, 0.5, offsets=[0, 50, 1000])
    assert all(torch.equal(s, p + o) for s, p, o in zip(shifted, plain, (0, 50, 1000)))
    assert len(shifted[2]) > 10 and shifted[2].min() >= 1000
