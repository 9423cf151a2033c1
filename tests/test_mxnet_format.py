"""MXNet's NDArray file format, checked against files MXNet 1.9.1 wrote (../shared/fixtures/mxnet)."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simpledet.errors import UserError
from simpledet.modeling.norm import FrozenBatchNorm2d
from simpledet.weights.mxnet_format import (
    decode_ndarray_file,
    encode_ndarray_file,
    read_ndarray_file,
    split_prefixes,
    write_ndarray_file,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "mxnet"
FILES = ["dtypes.params", "unnamed.params", "gluon.params", "tiny-0000.params"]
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")


def _reference(name: str) -> dict:
    return json.loads((FIXTURES / name.replace(".params", ".json")).read_text())


@pytest.mark.parametrize("name", FILES)
def test_every_array_matches_mxnet(name):
    arrays = read_ndarray_file(FIXTURES / name)
    expected = _reference(name)["arrays"]
    if name == "unnamed.params":  # an unnamed list comes back as a list, in order
        assert isinstance(arrays, list)
        pairs = list(zip(arrays, expected))
    else:
        assert isinstance(arrays, dict) and sorted(arrays) == sorted(e["name"] for e in expected)
        pairs = [(arrays[e["name"]], e) for e in expected]
    assert len(pairs) == len(expected)
    for value, ref in pairs:
        assert value.dtype == np.dtype(ref["dtype"]), ref["name"]
        assert value.shape == tuple(ref["shape"]), ref["name"]
        assert value.flags.writeable and value.flags.aligned
        np.testing.assert_array_equal(value.ravel(), np.asarray(ref["values"], dtype=value.dtype), err_msg=ref["name"])


def test_all_dtypes_and_ranks_present():
    arrays = read_ndarray_file(FIXTURES / "dtypes.params")
    dtypes = {a.dtype.name for a in arrays.values()}
    assert {"float32", "float16", "float64", "uint8", "int8", "int32", "int64"} <= dtypes
    assert {a.ndim for a in arrays.values()} == {1, 2, 3, 5}


@pytest.mark.parametrize("name", FILES)
def test_writer_reproduces_mxnet_bytes(name, tmp_path):
    original = (FIXTURES / name).read_bytes()
    arrays = read_ndarray_file(FIXTURES / name)
    write_ndarray_file(tmp_path / name, arrays)
    assert (tmp_path / name).read_bytes() == original


def test_round_trip_other_dtypes():
    arrays = {"b": np.array([True, False]), "i16": np.arange(6, dtype=np.int16).reshape(2, 3),
              "u64": np.array([2**63 + 5], dtype=np.uint64), "big": np.ones((2, 1, 1, 1, 3), ">f4")}
    back = decode_ndarray_file(encode_ndarray_file(arrays))
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype.newbyteorder("=") and np.array_equal(back[k], v)


def test_tiny_module_checkpoint_computes_mxnet_output():
    # tiny-symbol.json: conv 3x3 pad 1 no bias -> BatchNorm(global stats, eps 1e-5) -> ReLU -> FC
    ref = _reference("tiny-0000.params")
    p = {k: torch.from_numpy(v) for k, v in split_prefixes(read_ndarray_file(FIXTURES / "tiny-0000.params")).items()}
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
    bn = FrozenBatchNorm2d(4, eps=1e-5)
    fc = nn.Linear(100, 3)
    conv.weight.data.copy_(p["conv0_weight"])
    bn.weight.copy_(p["bn0_gamma"])
    bn.bias.copy_(p["bn0_beta"])
    bn.running_mean.copy_(p["bn0_moving_mean"])
    bn.running_var.copy_(p["bn0_moving_var"])
    fc.weight.data.copy_(p["fc1_weight"])
    fc.bias.data.copy_(p["fc1_bias"])
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), fc)
    x = torch.tensor(ref["input"]["values"], dtype=torch.float32).reshape(ref["input"]["shape"])
    with torch.no_grad():
        y = model(x)
    expected = torch.tensor(ref["output"]["values"]).reshape(ref["output"]["shape"])
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-4)


def test_module_prefixes():
    arrays = read_ndarray_file(FIXTURES / "tiny-0000.params")
    assert {k.split(":")[0] for k in arrays} == {"arg", "aux"}
    bare = split_prefixes(arrays)
    assert "bn0_moving_var" in bare and "conv0_weight" in bare
    with pytest.raises(UserError, match="both as arg: and aux:"):
        split_prefixes({"arg:x": np.zeros(1), "aux:x": np.zeros(1)})


# ---------------------------------------------------------------- broken files

def _corrupt(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def _errors():
    good = (FIXTURES / "tiny-0000.params").read_bytes()
    # first array header: magic @24, stype @28, ndim @32, dims @36 (4 x i64), dev @68, flag @76
    return {
        "empty": (b"", "empty"),
        "text": (b"hello, this is not a weights file", "magic number"),
        "zip": (b"PK\x03\x04" + bytes(40), "zip archive"),
        "pickle": (b"\x80\x02}q\x00" + bytes(20), "pickle"),
        "reserved": (_corrupt(good, 8, "<Q", 7), "reserved header field is 7"),
        "count": (_corrupt(good, 16, "<Q", 10**12), "declares 1000000000000 arrays"),
        "array_magic": (_corrupt(good, 24, "<I", 0xDEADBEEF), "magic number 0xdeadbeef"),
        "sparse": (_corrupt(good, 28, "<i", 1), "row_sparse storage"),
        "ndim": (_corrupt(good, 32, "<i", 1000), "ndim 1000"),
        "negative_dim": (_corrupt(good, 36, "<q", -4), "negative dimension"),
        "huge_dim": (_corrupt(good, 36, "<q", 2**40), "truncated"),
        "device": (_corrupt(good, 68, "<i", 99), "device type 99"),
        "dtype": (_corrupt(good, 76, "<i", 42), "dtype flag 42"),
        "bfloat16": (_corrupt(good, 76, "<i", 12), "bfloat16"),
        "truncated_data": (good[:300], "truncated: array 0 of 7 data"),
        "truncated_header": (good[:20], "array count"),
        "truncated_names": (good[:-3], "truncated: name 6"),
        "trailing": (good + b"\0\0", "2 unexpected bytes"),
        "name_count": (_corrupt(good, len(good) - sum(8 + len(n) for n in _names(good)) - 8, "<Q", 3),
                       "3 names for 7 arrays"),
    }


def _names(data: bytes) -> list[str]:
    return list(decode_ndarray_file(data))


@pytest.mark.parametrize("case", list(_errors()) if FIXTURES.is_dir() else [])
def test_broken_files_give_clear_errors(case, tmp_path):
    data, message = _errors()[case]
    path = tmp_path / f"{case}.params"
    path.write_bytes(data)
    with pytest.raises(UserError) as info:
        read_ndarray_file(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


def test_missing_file():
    with pytest.raises(UserError, match="not found"):
        read_ndarray_file("/nonexistent/model-0000.params")


def test_duplicate_names_rejected():
    data = encode_ndarray_file({"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)})
    data = data.replace(b"\x01\x00\x00\x00\x00\x00\x00\x00b", b"\x01\x00\x00\x00\x00\x00\x00\x00a")
    with pytest.raises(UserError, match="'a' appears twice"):
        decode_ndarray_file(data, "dup.params")


def test_writer_rejects_what_mxnet_cannot_store():
    with pytest.raises(ValueError, match="dtype"):
        encode_ndarray_file({"c": np.zeros(2, np.complex64)})
    with pytest.raises(ValueError, match="shape"):
        encode_ndarray_file([np.float32(1.0)])


def test_older_and_numpy_array_headers():
    """V1 (no storage type), pre-V1 (no magic: u32 ndim, u32 dims) and V3 (numpy shapes: 0-d)."""
    data = np.arange(6, dtype="<f4").tobytes()
    head = struct.pack("<QQQ", 0x112, 0, 3)
    v1 = struct.pack("<Ii2q3i", 0xF993FAC8, 2, 2, 3, 1, 0, 0) + data
    legacy = struct.pack("<I2I3i", 2, 3, 2, 1, 0, 0) + data
    v3_scalar = struct.pack("<Iii2i i", 0xF993FACA, 0, 0, 1, 0, 6) + struct.pack("<q", -7)
    arrays = decode_ndarray_file(head + v1 + legacy + v3_scalar + struct.pack("<Q", 0))
    assert arrays[0].shape == (2, 3) and arrays[1].shape == (3, 2) and arrays[2].shape == ()
    assert np.array_equal(arrays[0].ravel(), np.arange(6)) and arrays[2] == -7
    none = struct.pack("<IiI", 0xF993FAC9, 0, 0)  # MXNet's shapeless "none" array
    with pytest.raises(UserError, match="empty .shapeless. NDArray"):
        decode_ndarray_file(struct.pack("<QQQ", 0x112, 0, 1) + none + struct.pack("<Q", 0), "none.params")
