"""`simpledet inspect`: name, dtype and shape of every array in .params, .pth and .safetensors files."""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from simpledet.errors import UserError
from simpledet.weights.inspect import describe_weights, format_listing, run_inspect

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "mxnet"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")
def test_mxnet_params():
    rows = describe_weights(FIXTURES / "tiny-0000.params")
    assert ("arg:conv0_weight", "float32", (4, 2, 3, 3)) in rows
    assert ("aux:bn0_moving_var", "float32", (4,)) in rows and len(rows) == 7
    dtypes = dict((n, d) for n, d, _ in describe_weights(FIXTURES / "dtypes.params"))
    assert dtypes["float16"] == "float16" and dtypes["int64"] == "int64"
    assert [r[0] for r in describe_weights(FIXTURES / "unnamed.params")] == ["0", "1"]


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")
def test_sniffs_content_when_suffix_is_unknown(tmp_path):
    shutil.copy(FIXTURES / "gluon.params", tmp_path / "weights.bin.old")
    assert ("1.running_var", "float32", (4,)) in describe_weights(tmp_path / "weights.bin.old")


def test_pth_and_safetensors(tmp_path):
    state = {"conv1.weight": torch.zeros(8, 3, 7, 7), "bn1.num_batches_tracked": torch.tensor(0),
             "fc.bias": torch.zeros(10, dtype=torch.float16)}
    torch.save({"model": state, "epoch": 3}, tmp_path / "m.pth")
    rows = describe_weights(tmp_path / "m.pth")
    assert rows == [("model.conv1.weight", "float32", (8, 3, 7, 7)), ("model.bn1.num_batches_tracked", "int64", ()),
                    ("model.fc.bias", "float16", (10,))]
    save_file(state, str(tmp_path / "m.safetensors"))
    assert sorted(describe_weights(tmp_path / "m.safetensors")) == sorted(
        [("conv1.weight", "float32", (8, 3, 7, 7)), ("bn1.num_batches_tracked", "int64", ()),
         ("fc.bias", "float16", (10,))])
    text = run_inspect(tmp_path / "m.safetensors")
    assert "conv1.weight" in text and "8x3x7x7" in text and "3 arrays, 1,187 values" in text


def test_format_listing_aligns_columns():
    text = format_listing([("a", "float32", (2, 3)), ("long_name", "int8", (1,))])
    lines = text.splitlines()
    assert lines[0].index("float32") == lines[1].index("int8")
    assert lines[-1] == "2 arrays, 7 values"


def test_bad_files(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    (tmp_path / "bad.params").write_bytes(b"garbage!garbage!garbage!")
    (tmp_path / "notes.txt").write_text("hello")
    for name, message in [("bad.safetensors", "safetensors"), ("bad.pth", "PyTorch"),
                          ("bad.params", "not an MXNet NDArray file"), ("notes.txt", "not a weights file"),
                          ("missing.pth", "not found")]:
        with pytest.raises(UserError, match=message):
            describe_weights(tmp_path / name)


def test_pickled_code_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="not a plain PyTorch weights file"):
        describe_weights(tmp_path / "evil.pth")
