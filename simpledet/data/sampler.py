"""Infinite, deterministic, resumable batch sampler that groups images by aspect ratio.

Batch k of the stream depends only on (aspect_ratios, batch_size, seed, k, num_replicas),
so a killed run restarted with start_iter=k sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from simpledet.errors import UserError


class GroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; each global batch holds only wide or only tall images."""

    def __init__(self, aspect_ratios: list[float], batch_size: int, seed: int,
                 start_iter: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if not aspect_ratios:
            raise UserError("training dataset is empty: no images to sample batches from")
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas or start_iter < 0:
            raise ValueError(f"bad sampler setup: batch_size={batch_size}, "
                             f"start_iter={start_iter}, num_replicas={num_replicas}, rank={rank}")
        self.groups = [0 if r >= 1 else 1 for r in aspect_ratios]
        self.batch_size = batch_size
        self.seed = seed
        self.start_iter = start_iter
        self.num_replicas = num_replicas
        self.rank = rank
        self.global_batch = batch_size * num_replicas
        n = len(aspect_ratios)
        per_group = [self.groups.count(g) for g in (0, 1)]
        grouped = sum(c // self.global_batch for c in per_group)
        # Each group emits one batch per global_batch members whatever the order, so the
        # count per epoch is fixed; that lets start_iter jump straight to its epoch.
        if grouped > 0:
            self.mode, self._per_epoch = "grouped", grouped
        elif n >= self.global_batch:
            self.mode, self._per_epoch = "mixed", n // self.global_batch
        else:
            self.mode, self._per_epoch = "repeat", 1

    def batches_per_epoch(self) -> int:
        """Global batches (iterations) in one pass over the data."""
        return self._per_epoch

    def _epoch(self, epoch: int) -> list[list[int]]:
        """All global batches of one epoch, in emission order."""
        gen = torch.Generator().manual_seed(self.seed + epoch)
        perm = torch.randperm(len(self.groups), generator=gen).tolist()
        size = self.global_batch
        if self.mode == "repeat":  # fewer images than one batch: cycle them
            return [[perm[i % len(perm)] for i in range(size)]]
        if self.mode == "mixed":  # no group fills a batch: ignore grouping
            return [perm[i:i + size] for i in range(0, self._per_epoch * size, size)]
        buffers: list[list[int]] = [[], []]
        out: list[list[int]] = []
        for idx in perm:
            buf = buffers[self.groups[idx]]
            buf.append(idx)
            if len(buf) == size:
                out.append(buf.copy())
                buf.clear()
        return out  # leftovers are dropped

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start_iter, self._per_epoch)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        while True:
            for batch in self._epoch(epoch)[offset:]:
                yield batch[lo:hi]
            epoch, offset = epoch + 1, 0
