"""Small tensor helpers that never make the host wait for the GPU.

On a fast GPU a detector's heads are bound by the host, and each wait for the device leaves the
device idle until the host has queued the next kernels (bench/profile_step.py). These are the
sync-free forms of calls that would otherwise wait."""

import torch
from torch import Tensor


def count_indices(indices: Tensor, size: int, where: Tensor | None = None) -> Tensor:
    """How often each of 0..size-1 occurs in `indices` (only at the entries `where` is True, if
    given), as int64 on indices' device.

    torch.bincount's CUDA kernel reads the input's minimum and maximum back to the host (two
    waits), and selecting entries by a mask waits once more; a scatter-add into `size` counters
    needs neither. Indices must lie in [0, size)."""
    indices = indices.reshape(-1).long()
    ones = torch.ones_like(indices) if where is None else where.reshape(-1).long()
    return torch.zeros(size, dtype=torch.int64, device=indices.device).scatter_add_(0, indices, ones)


def host_tensor(values, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """`torch.tensor(values)` on `device`, copied without waiting for the GPU.

    A plain copy of host memory to the GPU waits for the stream to finish what it has queued.
    From pinned memory with non_blocking the copy just joins the stream's queue; torch's pinned
    allocator keeps the host buffer until the copy has run."""
    tensor = torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def true_indices(masks: list[Tensor]) -> list[Tensor]:
    """The positions of the True entries of each 1-D boolean mask, as torch.nonzero gives them (in
    order), with one wait for the device in all: the counts are read together, and
    nonzero_static, told its count, waits for nothing. Indexing each mask's tensors with these
    instead of the mask itself (which waits once per tensor) gives the same rows."""
    if not masks:
        return []
    counts = torch.stack([mask.sum() for mask in masks]).tolist()
    return [torch.nonzero_static(mask, size=count).squeeze(1) for mask, count in zip(masks, counts)]
