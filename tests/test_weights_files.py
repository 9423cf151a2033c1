"""Weights files are read by content and written as their extension says, by every command."""

import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from simpledet.cli import main
from simpledet.engine.checkpoint import load_weights, read_state_dict, save_weights
from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.weights.file_format import MXNET, SAFETENSORS, TORCH, sniff, write_state_dict
from simpledet.weights.inspect import describe_weights
from simpledet.weights.mxnet_backbone import convert_mxnet_backbone, read_mxnet_backbone
from simpledet.weights.mxnet_format import LIST_MAGIC

from .helpers import load_into

MXNET_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mxnet_made" / "resnet_v1b_50-0000.params"


def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def _assert_same_state(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


@pytest.mark.parametrize(("name", "kind", "first_bytes"), [("w.safetensors", SAFETENSORS, None),
                                                           ("w.pt", TORCH, b"PK\x03\x04"),
                                                           ("w.pth", TORCH, b"PK\x03\x04")])
def test_the_extension_sets_the_written_format(tmp_path, name, kind, first_bytes):
    model = _small_model()
    save_weights(model, tmp_path / name, {"iteration": 3})
    data = (tmp_path / name).read_bytes()
    if kind == SAFETENSORS:  # u64 header length, then the JSON header
        header_len = struct.unpack_from("<Q", data)[0]
        assert data[8:9] == b"{" and "0.weight" in json.loads(data[8:8 + header_len])
    else:
        assert data[:4] == first_bytes
        # torch.save of a plain state dict: loads with the restricted unpickler, nothing wrapped
        plain = torch.load(tmp_path / name, weights_only=True)
        _assert_same_state(plain, model.state_dict())
    assert sniff(tmp_path / name) == kind
    _assert_same_state(read_state_dict(tmp_path / name), model.state_dict())
    assert json.loads((tmp_path / name).with_suffix(".json").read_text()) == {"iteration": 3}


@pytest.mark.parametrize("name", ["w.ckpt", "w.params", "w", "w.bin"])
def test_an_extension_we_cannot_honour_is_refused_before_writing(tmp_path, name):
    with pytest.raises(UserError, match=r"cannot write weights as .*\.safetensors.*\.pt / \.pth") as e:
        save_weights(_small_model(), tmp_path / name, {"iteration": 1})
    assert str(tmp_path / name) in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_the_reader_ignores_the_name(tmp_path):
    """Each format under another format's name, and a legacy (pre-zip) torch pickle."""
    state = _small_model().state_dict()
    write_state_dict(tmp_path / "a.safetensors", state)
    write_state_dict(tmp_path / "b.pt", state)
    (tmp_path / "a.safetensors").rename(tmp_path / "safetensors_inside.pt")
    (tmp_path / "b.pt").rename(tmp_path / "zip_inside.safetensors")
    torch.save(state, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    for name, kind in [("safetensors_inside.pt", SAFETENSORS), ("zip_inside.safetensors", TORCH),
                       ("legacy.bin", TORCH)]:
        assert sniff(tmp_path / name) == kind
        _assert_same_state(read_state_dict(tmp_path / name), state)
        assert sorted(row[0] for row in describe_weights(tmp_path / name)) == sorted(state)


def test_convert_torchvision_to_pt_then_load_it(tmp_path, capsys):
    """`convert torchvision SRC X.pt` writes a torch file, and X.pt then loads as weights."""
    def backbone():
        return nn.Sequential(nn.Conv2d(3, 4, 3), FrozenBatchNorm2d(4))  # torchvision detection's layers

    torch.manual_seed(2)
    source = backbone()
    for buffer in source.buffers():
        buffer.copy_(torch.rand_like(buffer))
    tv = {f"backbone.body.{k}": v for k, v in source.state_dict().items()}
    tv["backbone.body.1.num_batches_tracked"] = torch.tensor(5)  # a counter the renamer drops
    fpn_conv = nn.Conv2d(4, 4, 3)  # every torchvision detector has its FPN
    tv.update({f"backbone.fpn.layer_blocks.0.0.{k}": v for k, v in fpn_conv.state_dict().items()})
    torch.save(tv, tmp_path / "tv.pth")
    assert main(["convert", "torchvision", str(tmp_path / "tv.pth"), str(tmp_path / "converted.pt")]) == 0
    assert (tmp_path / "converted.pt").read_bytes()[:4] == b"PK\x03\x04"
    converted = read_state_dict(tmp_path / "converted.pt")
    assert sorted(converted) == sorted([f"backbone.{k}" for k in source.state_dict()]
                                       + ["neck.output_convs.0.weight", "neck.output_convs.0.bias"])

    holder = nn.Module()
    holder.backbone = backbone()
    holder.neck = nn.Module()
    holder.neck.output_convs = nn.ModuleList([nn.Conv2d(4, 4, 3)])
    load_weights(holder, tmp_path / "converted.pt")
    _assert_same_state(holder.backbone.state_dict(), source.state_dict())
    _assert_same_state(holder.neck.output_convs[0].state_dict(), fpn_conv.state_dict())

    assert main(["convert", "torchvision", str(tmp_path / "tv.pth"), str(tmp_path / "converted.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "converted.ckpt" in err and ".safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "converted.ckpt").exists()


def test_an_mxnet_file_is_named_whatever_its_name(tmp_path):
    disguised = tmp_path / "weights.pt"
    disguised.write_bytes(MXNET_FIXTURE.read_bytes())
    assert sniff(disguised) == MXNET
    with pytest.raises(UserError, match=r"weights\.pt is an MXNet NDArray file .*convert simpledet"):
        read_state_dict(disguised)
    # as a pretrained backbone it is read by content: the same arrays as the file under its own name
    model = ResNetConfig(depth=50, base_width=4).build()
    report = load_into(model, disguised)
    direct, _ = read_mxnet_backbone(MXNET_FIXTURE)
    assert len(report.loaded) == len(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(value, direct.state[name]), name


def test_a_pretrained_file_named_params_is_read_by_content(tmp_path):
    """A PyTorch backbone file under an MXNet name is no longer sent to the MXNet reader."""
    torch.manual_seed(1)
    source = ResNetConfig(depth=18, base_width=8, norm="bn").build()
    write_state_dict(tmp_path / "backbone.safetensors", source.state_dict())
    (tmp_path / "backbone.safetensors").rename(tmp_path / "backbone.params")
    target = ResNetConfig(depth=18, base_width=8, norm="bn").build()
    load_into(target, tmp_path / "backbone.params")
    for name, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[name]), name


def test_convert_mxnet_to_pt_keeps_what_the_file_is(tmp_path):
    """`convert mxnet` honours .pt, and the loader still learns the file's family and variant
    (from the JSON beside it, as a torch file has no header for them)."""
    src = tmp_path / "resnet50_v1b-0000.params"  # SimpleDet's file name, which says v1b
    src.write_bytes(MXNET_FIXTURE.read_bytes())
    text = convert_mxnet_backbone(src, tmp_path / "r50.pt")
    assert "base_width=4" in text
    assert sniff(tmp_path / "r50.pt") == TORCH
    model = ResNetConfig(depth=50, base_width=4, variant="v1").build()
    report = load_into(model, tmp_path / "r50.pt")
    assert report.family.endswith("converted from MXNet") and "ResNet v1/v1b-50" in report.family
    # the file's name said v1b and the model is v1: the loader says so
    assert report.warnings and "v1b" in report.warnings[0]


def _cut(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def test_cut_short_and_foreign_files_are_named(tmp_path):
    state = _small_model().state_dict()
    write_state_dict(tmp_path / "whole.safetensors", state)
    write_state_dict(tmp_path / "whole.pt", state)
    torch.save(state, tmp_path / "whole_legacy.pt", _use_new_zipfile_serialization=False)
    cases = {
        _cut(tmp_path / "whole.safetensors", tmp_path / "a.safetensors", 0.9): r"a safetensors file cut short",
        _cut(tmp_path / "whole.safetensors", tmp_path / "b.safetensors", 0.01): r"a safetensors file cut short",
        _cut(tmp_path / "whole.pt", tmp_path / "c.pt", 0.8): r"a PyTorch zip file cut short",
        # torch.load's own error, in read_state_dict's words or inspect's
        _cut(tmp_path / "whole_legacy.pt", tmp_path / "d.pt", 0.5): r"does not load as plain|not a plain PyTorch",
        _cut(MXNET_FIXTURE, tmp_path / "e.params", 0.5): r"not a valid MXNet NDArray file: truncated",
    }
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello, these are notes")
    (tmp_path / "noise.params").write_bytes(struct.pack("<Q", LIST_MAGIC + 1) + b"\x01\x02" * 8)
    cases[tmp_path / "empty.pt"] = r"not a PyTorch weights file, whatever its name says \(the file is empty\)"
    cases[tmp_path / "notes.txt"] = r"not a weights file we read \(it starts with the text 'hello, these are'\)"
    cases[tmp_path / "noise.params"] = r"not an MXNet NDArray file, whatever its name says \(it starts with the bytes"
    for path, message in cases.items():
        for reader in (read_state_dict, describe_weights):
            if path.suffix == ".params" and reader is read_state_dict and "truncated" in message:
                continue  # an MXNet file: read_state_dict names it as such, it never decodes it
            with pytest.raises(UserError, match=message) as e:
                reader(path)
            assert str(path) in str(e.value)
    with pytest.raises(UserError, match="not found"):
        read_state_dict(tmp_path / "missing.pt")
