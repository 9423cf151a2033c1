"""Mixed precision: which autocast dtype a config asks for on a device, and autocast contexts.

fp16 needs a GPU (and dynamic loss scaling, engine/trainer.py); bf16 runs on GPUs that support it
and on the CPU, and needs no loss scaling (fp32's exponent range). Weights stay fp32 (the master
copy the optimizer updates); only the operations autocast lists run in the lower precision."""

import contextlib
import logging

import torch

from simpledet.errors import UserError

log = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype(enabled: bool, name: str, device: torch.device, key: str = "train.amp_dtype") -> torch.dtype | None:
    """The dtype to autocast to, or None for fp32. fp16 asked for on a CPU falls back to fp32
    (with a warning): the zoo's _fp16 configs still run on a machine without a GPU."""
    if name not in AMP_DTYPES:
        raise UserError(f"{key}: {name!r} is not one of {sorted(AMP_DTYPES)}")
    if not enabled:
        return None
    dtype = AMP_DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        log.warning("%s float16 needs a GPU: running in fp32 on the CPU (bfloat16 works on the CPU)", key)
        return None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise UserError(f"{key}: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16; use float16")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast to `dtype`, or nothing when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
