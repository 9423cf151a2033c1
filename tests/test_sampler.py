"""GroupedBatchSampler: deterministic, resumable, aspect-homogeneous, rank-disjoint."""

from __future__ import annotations

from itertools import islice

import pytest

from simpledet.data.sampler import GroupedBatchSampler
from simpledet.errors import UserError

# 27 wide (ratio >= 1) and 10 tall images, interleaved.
RATIOS = [1.0 if i % 3 else 0.75 for i in range(30)] + [1.33] * 7


def _take(sampler: GroupedBatchSampler, n: int) -> list[list[int]]:
    return list(islice(iter(sampler), n))


def test_same_seed_same_stream_other_seed_differs() -> None:
    a = _take(GroupedBatchSampler(RATIOS, 4, seed=5), 40)
    assert a == _take(GroupedBatchSampler(RATIOS, 4, seed=5), 40)
    assert a != _take(GroupedBatchSampler(RATIOS, 4, seed=6), 40)


@pytest.mark.parametrize("start", [0, 1, 7, 8, 9, 23])
def test_start_iter_resumes_the_fresh_stream(start: int) -> None:
    fresh = _take(GroupedBatchSampler(RATIOS, 4, seed=1), start + 20)
    resumed = _take(GroupedBatchSampler(RATIOS, 4, seed=1, start_iter=start), 20)
    assert resumed == fresh[start:]


def test_batches_are_aspect_homogeneous_and_epochs_use_each_index_once() -> None:
    sampler = GroupedBatchSampler(RATIOS, 4, seed=0)
    per_epoch = sampler.batches_per_epoch()
    assert per_epoch == 27 // 4 + 10 // 4
    stream = _take(sampler, 3 * per_epoch)
    for e in range(3):
        epoch = stream[e * per_epoch:(e + 1) * per_epoch]
        used = [i for b in epoch for i in b]
        assert len(used) == len(set(used))
        for batch in epoch:
            assert len(batch) == 4
            assert len({RATIOS[i] >= 1 for i in batch}) == 1
    assert stream[:per_epoch] != stream[per_epoch:2 * per_epoch]  # reshuffled each epoch


def test_rank_slices_are_disjoint_and_make_the_global_batch() -> None:
    ranks = [_take(GroupedBatchSampler(RATIOS, 2, seed=3, start_iter=4, num_replicas=3, rank=r),
                   10) for r in range(3)]
    single = GroupedBatchSampler(RATIOS, 6, seed=3, start_iter=4)
    assert GroupedBatchSampler(RATIOS, 2, seed=3, num_replicas=3).batches_per_epoch() == \
        single.batches_per_epoch()
    for k, global_batch in enumerate(_take(single, 10)):
        parts = [ranks[r][k] for r in range(3)]
        assert all(len(p) == 2 for p in parts)
        assert sum(parts, []) == global_batch
        assert len(set(sum(parts, []))) == 6


def test_small_datasets_never_hang() -> None:
    # No group fills a batch: mixed batches from the whole permutation.
    mixed = GroupedBatchSampler([1.0, 1.0, 0.5, 0.5, 0.5], 4, seed=0)
    assert mixed.batches_per_epoch() == 1
    assert all(len(set(b)) == 4 for b in _take(mixed, 5))
    # Fewer images than one batch: indices repeat to fill it.
    tiny = GroupedBatchSampler([1.0, 0.5], 3, seed=0)
    batches = _take(tiny, 4)
    assert all(len(b) == 3 and set(b) == {0, 1} for b in batches)
    with pytest.raises(UserError):
        GroupedBatchSampler([], 2, seed=0)
