"""Data loaders for training (endless, grouped, resumable) and evaluation (in order).

A sample that cannot be read (a UserError from the dataset) stops the loop with the dataset's own
message, in the main process. DataLoader re-raises a worker's exception with the worker's
traceback in its message, so a worker hands the message over as a value instead (`_Unreadable`),
and the loader raises it when that batch's turn comes: every batch before it is used."""

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from simpledet.data.coco import CocoDetection, collate
from simpledet.data.rand_resize_crop import RandResizeCrop, RandResizeCropConfig
from simpledet.data.sampler import GroupedBatchSampler
from simpledet.data.scale_jitter import KeyedBatches, ScaleJitter, ScaleJitterConfig
from simpledet.errors import UserError


@dataclass
class _Unreadable:
    message: str


class _Guarded(Dataset):
    """The dataset as a worker reads it: a UserError becomes an _Unreadable sample."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except UserError as e:
            return _Unreadable(str(e))


def _collate(batch: list) -> tuple[list, list] | _Unreadable:
    failed = [sample for sample in batch if isinstance(sample, _Unreadable)]
    return failed[0] if failed else collate(batch)


class _Loader(DataLoader):
    """A DataLoader that raises an _Unreadable batch's message as a UserError."""

    def __iter__(self) -> Iterator[tuple[list, list]]:
        for batch in super().__iter__():
            if isinstance(batch, _Unreadable):
                raise UserError(batch.message)
            yield batch


def build_train_loader(dataset: CocoDetection, batch_size: int, num_workers: int, seed: int,
                       start_iter: int = 0, num_replicas: int = 1, rank: int = 0,
                       pin_memory: bool = False, scale_jitter: ScaleJitterConfig | None = None,
                       rand_resize_crop: RandResizeCropConfig | None = None) -> DataLoader:
    sampler = GroupedBatchSampler(dataset.aspect_ratios, batch_size, seed, start_iter, num_replicas, rank)
    if scale_jitter is not None and rand_resize_crop is not None:
        raise UserError("data.scale_jitter and data.rand_resize_crop are two ways to resize training images: "
                        "set one of them")
    if scale_jitter is not None or rand_resize_crop is not None:  # draws keyed by (seed, iteration, place)
        sampler = KeyedBatches(sampler, seed=seed, start_iter=start_iter, rank=rank)
        dataset = ScaleJitter(dataset, scale_jitter) if scale_jitter is not None else \
            RandResizeCrop(dataset, rand_resize_crop)
    # A private generator: creating the iterator would otherwise draw from the global RNG, which
    # the model's samplers use, and a resumed run would see a shifted random stream.
    generator = torch.Generator().manual_seed(seed)
    return _Loader(_Guarded(dataset), batch_sampler=sampler, num_workers=num_workers, collate_fn=_collate,
                   persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None,
                   generator=generator, pin_memory=pin_memory)


def build_test_loader(dataset: CocoDetection, batch_size: int, num_workers: int,
                      indices: list[int] | None = None) -> DataLoader:
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, indices)
    return _Loader(_Guarded(subset), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                   collate_fn=_collate)
