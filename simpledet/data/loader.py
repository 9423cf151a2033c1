"""Data loaders for training (endless, grouped, resumable) and evaluation (in order)."""

import torch
from torch.utils.data import DataLoader

from simpledet.data.coco import CocoDetection, collate
from simpledet.data.sampler import GroupedBatchSampler


def build_train_loader(dataset: CocoDetection, batch_size: int, num_workers: int, seed: int,
                       start_iter: int = 0, num_replicas: int = 1, rank: int = 0,
                       pin_memory: bool = False) -> DataLoader:
    sampler = GroupedBatchSampler(dataset.aspect_ratios, batch_size, seed, start_iter, num_replicas, rank)
    # A private generator: creating the iterator would otherwise draw from the global RNG, which
    # the model's samplers use, and a resumed run would see a shifted random stream.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None,
                      generator=generator, pin_memory=pin_memory)


def build_test_loader(dataset: CocoDetection, batch_size: int, num_workers: int,
                      indices: list[int] | None = None) -> DataLoader:
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, indices)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate)
