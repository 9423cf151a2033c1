"""RoIAlign spread over CPU threads: the same bits as torchvision's single-threaded kernel, forward
and backward, for NCHW and NHWC inputs, any batch, any thread count, images without RoIs."""

import pytest
import torch
from torchvision.ops import roi_align as torchvision_roi_align

from simpledet.accel.roi_align import as_nchw, roi_align


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def make_case(batch: int, channels_last: bool, empty_image: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, 6, 13, 17, generator=g)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    count = 23
    corner = torch.rand(count, 2, generator=g) * torch.tensor([17 * 4.0, 13 * 4.0])
    size = torch.rand(count, 2, generator=g) * 30 + 0.5
    images = torch.randint(0, batch, (count, 1), generator=g).float()
    if empty_image is not None:
        images[images == empty_image] = (empty_image + 1) % batch
    rois = torch.cat([images, corner, corner + size], dim=1)
    # a few RoIs reaching past the feature map's border, where RoIAlign clamps or zeroes
    rois[:3, 3:] += 20.0
    return features.requires_grad_(), rois, torch.randn(count, 6, 3, 4, generator=g)


@pytest.mark.parametrize("num_threads", [2, 3])
@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("aligned,sampling_ratio", [(False, 2), (True, -1)])
def test_bit_identical_to_torchvision(threads, num_threads, batch, channels_last, aligned, sampling_ratio):
    threads(num_threads)
    features, rois, upstream = make_case(batch, channels_last, empty_image=1 if batch == 3 else None)
    results = []
    for op in (torchvision_roi_align, roi_align):
        features.grad = None
        out = op(features, rois, (3, 4), 0.25, sampling_ratio, aligned)
        out.backward(upstream)
        results.append((out, features.grad))
    (expected, expected_grad), (got, got_grad) = results
    assert type(got.grad_fn).__name__ == "_ThreadedRoIAlignBackward"  # the threaded path ran
    assert torch.equal(got, expected)
    assert torch.equal(got_grad, expected_grad)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert got_grad.is_contiguous(memory_format=layout)  # the layout of the layer that made it


def test_one_thread_is_torchvision_itself(threads):
    threads(1)
    features, rois, _ = make_case(2, channels_last=False)
    out = roi_align(features, rois, (3, 4), 0.25, 2)
    assert type(out.grad_fn).__name__ != "_ThreadedRoIAlignBackward"
    assert torch.equal(out, torchvision_roi_align(features, rois, (3, 4), 0.25, 2))


def test_no_rois(threads):
    threads(2)
    features, rois, _ = make_case(2, channels_last=True)
    out = roi_align(features, rois[:0], 7, 0.25, 2)
    assert out.shape == (0, 6, 7, 7)


def test_nhwc_features_copied_to_nchw_keep_their_values():
    x = torch.randn(2, 5, 7, 9)
    out = as_nchw(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(out, x) and out.is_contiguous()


def test_pool_threads_run_single_threaded_and_leave_the_callers_count(threads, monkeypatch):
    """Each pool thread runs its own operators on one thread (more OpenMP threads than cores
    slowed the rest of a step), and the caller's count, and the default that later threads
    take, are what they were."""
    import threading

    from simpledet.accel import thread_pool

    threads(2)
    monkeypatch.setattr(thread_pool, "_pools", {})  # a pool made here, not reused
    pool = thread_pool.thread_pool(3)
    assert set(pool.map(lambda _: torch.get_num_threads(), range(6))) == {1}
    assert torch.get_num_threads() == 2
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [2]


def test_one_pool_for_forward_and_backward_of_any_batch(threads, monkeypatch):
    """The pool has as many threads as torch, whatever the number of tasks (a batch of 8 images
    is 8 backward tasks): it is made once, not again at every change of task count."""
    from simpledet.accel import thread_pool

    made = []
    make = thread_pool._single_threaded_pool
    monkeypatch.setattr(thread_pool, "_single_threaded_pool", lambda n: made.append(n) or make(n))
    monkeypatch.setattr(thread_pool, "_pools", {})
    threads(2)
    features, rois, upstream = make_case(5, channels_last=True)
    for _ in range(2):
        roi_align(features, rois, (3, 4), 0.25, 2).backward(upstream)
    assert made == [2]
