"""`simpledet inspect FILE`: the arrays (name, dtype, shape) of any weights file we read, told
apart by content (weights/file_format.py): MXNet `.params`, PyTorch torch.save files (loaded with
weights_only=True, never unpickling code) and safetensors (header only, no tensor data read)."""

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from simpledet.errors import UserError
from simpledet.weights.file_format import MXNET, SAFETENSORS, load_torch_file, sniff
from simpledet.weights.mxnet_format import read_ndarray_file

ArrayInfo = tuple[str, str, tuple[int, ...]]

# safetensors dtype codes -> the numpy / torch names the other formats print
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32",
                       "U64": "uint64", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def describe_weights(path: str | Path) -> list[ArrayInfo]:
    """(name, dtype, shape) of every array in `path`, in stored order. Unnamed MXNet lists are
    named by position ("0", "1", ...); nested .pth containers by dotted path."""
    path = Path(path)
    kind = sniff(path)
    if kind == MXNET:
        arrays = read_ndarray_file(path)
        items = arrays.items() if isinstance(arrays, dict) else ((str(i), a) for i, a in enumerate(arrays))
        return [(name, a.dtype.name, tuple(a.shape)) for name, a in items]
    if kind == SAFETENSORS:
        return _describe_safetensors(path)
    return _describe_torch(path)


def _describe_safetensors(path: Path) -> list[ArrayInfo]:
    try:
        with safe_open(str(path), framework="pt") as f:
            rows = []
            for name in f.keys():
                s = f.get_slice(name)
                dtype = _SAFETENSORS_DTYPES.get(s.get_dtype(), s.get_dtype().lower())
                rows.append((name, dtype, tuple(s.get_shape())))
            return rows
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a valid safetensors file ({first})") from None


def _describe_torch(path: Path) -> list[ArrayInfo]:
    try:
        obj = load_torch_file(path)
    except Exception as e:  # the restricted unpickler refuses anything but tensors and containers
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a plain PyTorch weights file ({first})") from None
    rows: list[ArrayInfo] = []
    _walk(obj, "", rows)
    if not rows:
        raise UserError(f"{path}: holds no tensors")
    return rows


def _walk(obj: object, prefix: str, rows: list[ArrayInfo]) -> None:
    if isinstance(obj, torch.Tensor):
        rows.append((prefix or "<tensor>", str(obj.dtype).removeprefix("torch."), tuple(obj.shape)))
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _walk(value, f"{prefix}.{key}" if prefix else str(key), rows)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _walk(value, f"{prefix}.{i}" if prefix else str(i), rows)


def format_listing(rows: list[ArrayInfo], title: str | None = None) -> str:
    """A plain table, one array a line, and a total."""
    lines = [title] if title else []
    width = max((len(name) for name, _, _ in rows), default=4)
    dwidth = max((len(dtype) for _, dtype, _ in rows), default=5)
    for name, dtype, shape in rows:
        lines.append(f"{name:<{width}}  {dtype:<{dwidth}}  {'x'.join(map(str, shape)) or 'scalar'}")
    total = sum(math.prod(shape) for _, _, shape in rows)
    lines.append(f"{len(rows)} arrays, {total:,} values")
    return "\n".join(lines)


def run_inspect(path: str | Path) -> str:
    """The body of `simpledet inspect FILE`."""
    return format_listing(describe_weights(path), title=str(path))
