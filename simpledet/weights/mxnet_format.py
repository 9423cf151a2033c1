"""MXNet's binary NDArray file format (`mx.nd.save`, Module `.params`, Gluon `save_parameters`),
read and written with numpy alone: no MXNet, no pickle.

Layout, all integers little-endian (MXNet's `NDArray::Save` / `dmlc::Stream`):

    file    := u64 0x112 (list magic) | u64 0 (reserved) | u64 N | array * N
               | u64 K (0: unnamed list, else K == N) | (u64 len, utf-8 bytes) * K
    array   := u32 magic 0xF993FAC9 (V2; 0xF993FACA V3 = numpy shape semantics)
               | i32 storage type (0 dense) | shape | i32 dev_type | i32 dev_id
               | i32 dtype flag | raw data, C order
    shape   := u32 ndim | i64 dim * ndim

Older writers: magic 0xF993FAC8 (V1) is V2 without the storage type; files from before that
have no magic at all (the first u32 is ndim, the dims are u32). Both are read. A V2 array with
ndim 0 is MXNet's "none" array (shape only, no data); V3 uses ndim -1 for that and ndim 0 for a
scalar. Module checkpoints prefix names with `arg:` (parameters) and `aux:` (BN statistics).
"""

import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from simpledet.errors import UserError
from simpledet.files import atomic_write_bytes

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA

# mshadow's type flags; every dtype MXNet 1.x can save (bfloat16, flag 12, has no numpy dtype)
DTYPE_FLAGS: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"),
    5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"), 8: np.dtype("<i2"), 9: np.dtype("<u2"),
    10: np.dtype("<u4"), 11: np.dtype("<u8"),
}
_FLAG_OF = {dt.newbyteorder("<"): flag for flag, dt in DTYPE_FLAGS.items()}
_STORAGE = {0: "dense", 1: "row_sparse", 2: "csr"}
_DEVICES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
_MAX_NDIM = 32  # MXNet has no hard limit; anything near it means a corrupt header
_LEGACY_MAX_NDIM = 8  # files without a per-array magic begin with ndim instead

ArrayFile = dict[str, np.ndarray] | list[np.ndarray]


class _Reader:
    """A cursor over the file's bytes; every read checks the bytes are there."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source, self.pos = data, source, 0

    def fail(self, what: str) -> UserError:
        return UserError(f"{self.source}: not a valid MXNet NDArray file: {what}")

    def take(self, n: int, what: str) -> int:
        if n > len(self.data) - self.pos:
            raise self.fail(f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                            f"the file has {len(self.data) - self.pos} left")
        start, self.pos = self.pos, self.pos + n
        return start

    def scalar(self, fmt: str, what: str) -> int:
        return struct.unpack_from(fmt, self.data, self.take(struct.calcsize(fmt), what))[0]

    def left(self) -> int:
        return len(self.data) - self.pos


def _read_shape(r: _Reader, what: str, dim_fmt: str, ndim: int | None = None) -> tuple[int, ...] | None:
    """None for MXNet's "no shape" (a none array)."""
    if ndim is None:
        ndim = r.scalar("<i", f"{what} ndim")
    if ndim == -1:
        return None
    if not 0 <= ndim <= _MAX_NDIM:
        raise r.fail(f"{what} has ndim {ndim}")
    dims = struct.unpack_from(f"<{ndim}{dim_fmt}", r.data, r.take(ndim * struct.calcsize(dim_fmt), f"{what} shape"))
    if any(d < 0 for d in dims):
        raise r.fail(f"{what} has a negative dimension in shape {dims}")
    return tuple(dims)


def _read_array(r: _Reader, index: int, count: int) -> np.ndarray:
    what = f"array {index} of {count}"
    magic = r.scalar("<I", f"{what} magic number")
    numpy_shape = magic == V3_MAGIC
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = r.scalar("<i", f"{what} storage type")
        if stype != 0:
            kind = _STORAGE.get(stype)
            raise r.fail(f"{what} has {kind} storage, which is not supported (save it dense)" if kind
                         else f"{what} has unknown storage type {stype}")
        shape = _read_shape(r, what, "q")
    elif magic == V1_MAGIC:
        shape = _read_shape(r, what, "q")
    elif magic <= _LEGACY_MAX_NDIM:  # oldest files: no magic, u32 ndim then u32 dims
        shape = _read_shape(r, what, "I", ndim=magic)
    else:
        raise r.fail(f"{what} has magic number {magic:#010x}, expected {V2_MAGIC:#010x}")
    if shape is None or (not numpy_shape and len(shape) == 0):
        # a none array: MXNet writes its shape and nothing else; it holds no weights
        raise r.fail(f"{what} is an empty (shapeless) NDArray")
    dev_type = r.scalar("<i", f"{what} device type")
    r.scalar("<i", f"{what} device id")
    if dev_type not in _DEVICES:
        raise r.fail(f"{what} has device type {dev_type}, expected one of {sorted(_DEVICES)}")
    flag = r.scalar("<i", f"{what} dtype flag")
    if flag not in DTYPE_FLAGS:
        hint = " (bfloat16 is not supported: cast to float32 before saving)" if flag == 12 else ""
        raise r.fail(f"{what} has unknown dtype flag {flag}{hint}")
    dtype = DTYPE_FLAGS[flag]
    size = math.prod(shape)
    nbytes = size * dtype.itemsize  # python ints: a corrupt shape cannot overflow
    start = r.take(nbytes, f"{what} data ({dtype.name} {list(shape)})")
    # copy into native byte order: aligned, writable, and independent of the file's buffer
    return np.frombuffer(r.data, dtype, size, start).astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def decode_ndarray_file(data: bytes, source: str = "<bytes>") -> ArrayFile:
    """The arrays of an MXNet NDArray file's bytes: a dict (in file order) or, for an unnamed
    list, a list. Raises UserError naming `source` and the problem for anything malformed."""
    r = _Reader(data, source)
    if len(data) < 8 or struct.unpack_from("<Q", data)[0] != LIST_MAGIC:
        raise UserError(f"{source}: not an MXNet NDArray file ({_what_is_it(data)})")
    r.pos = 8
    reserved = r.scalar("<Q", "reserved header field")
    if reserved != 0:
        raise r.fail(f"reserved header field is {reserved}, expected 0")
    count = r.scalar("<Q", "array count")
    if count > r.left() // 16:  # each array needs at least 16 header bytes
        raise r.fail(f"header declares {count} arrays but only {r.left()} bytes follow")
    arrays = [_read_array(r, i, count) for i in range(count)]
    num_names = r.scalar("<Q", "name count")
    if num_names not in (0, count):
        raise r.fail(f"{num_names} names for {count} arrays")
    names = []
    for i in range(num_names):
        length = r.scalar("<Q", f"name {i} length")
        raw = r.data[r.take(length, f"name {i}"):r.pos]
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise r.fail(f"name {i} is not UTF-8 text ({raw[:40]!r})") from None
    if r.left():
        raise r.fail(f"{r.left()} unexpected bytes after the last name (offset {r.pos})")
    if not num_names:
        return arrays
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise r.fail(f"the name {dup!r} appears twice")
    return dict(zip(names, arrays))


def _what_is_it(data: bytes) -> str:
    if not data:
        return "the file is empty"
    if len(data) < 8:
        return f"only {len(data)} bytes"
    if data[:4] == b"PK\x03\x04":
        return "it is a zip archive, e.g. a PyTorch .pth checkpoint"
    if data[:1] == b"\x80":
        return "it looks like a Python pickle, which is never loaded"
    if data[8:9] == b"{":
        return "it looks like a safetensors file"
    return f"magic number {struct.unpack_from('<Q', data)[0]:#x}, expected {LIST_MAGIC:#x}"


def read_ndarray_file(path: str | Path) -> ArrayFile:
    """Reads an MXNet `.params` / `mx.nd.save` file: name -> numpy array (file order), or a list
    for an unnamed list. Module checkpoints keep their `arg:` / `aux:` prefixes (see split_prefixes)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    return decode_ndarray_file(data, str(path))


def encode_ndarray_file(arrays: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> bytes:
    """MXNet's bytes for `arrays`, exactly as MXNet 1.x writes them (V2 arrays on cpu(0))."""
    names = list(arrays.keys()) if isinstance(arrays, Mapping) else []
    values = list(arrays.values()) if isinstance(arrays, Mapping) else list(arrays)
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(values))]
    for i, value in enumerate(values):
        a = np.asarray(value)
        flag = _FLAG_OF.get(a.dtype.newbyteorder("<"))
        if flag is None:
            raise ValueError(f"array {names[i] if names else i}: MXNet cannot store dtype {a.dtype}")
        if a.ndim == 0 or a.size == 0:  # V2 would read these back as a none array
            raise ValueError(f"array {names[i] if names else i}: MXNet cannot store shape {a.shape}")
        parts.append(struct.pack(f"<Ii I{a.ndim}q iii", V2_MAGIC, 0, a.ndim, *a.shape, 1, 0, flag))
        parts.append(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    parts.append(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(parts)


def write_ndarray_file(path: str | Path, arrays: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> None:
    """Writes `arrays` (name -> array, or a list) in MXNet's format: the file `mx.nd.load` reads."""
    atomic_write_bytes(path, encode_ndarray_file(arrays))


def split_prefixes(arrays: Mapping[str, np.ndarray], source: str = "<arrays>") -> dict[str, np.ndarray]:
    """Drops a Module checkpoint's `arg:` / `aux:` prefixes (Gluon names have none)."""
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        bare = name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name
        if bare in out:
            raise UserError(f"{source}: {bare!r} is stored both as arg: and aux:")
        out[bare] = value
    return out
