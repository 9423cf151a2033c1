"""Weights by name: the download code against an HTTP server on 127.0.0.1 that can resume,
ignore Range, cut the connection or serve a damaged file; torchvision names through torch.hub's
cache, seeded here, without the network."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from simpledet.cli import main
from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.weights import by_name
from simpledet.weights.download import download
from simpledet.weights.mxnet_backbone import read_mxnet_backbone

from .helpers import load_into

# a ResNet-50 v1b at 1/16 width, written by MXNet itself (tests/test_mxnet_numeric.py)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mxnet_made" / "resnet_v1b_50-0000.params"
NAME = "resnet50_v1b"
FILE = f"{NAME}-0000.params"


class _Handler(BaseHTTPRequestHandler):
    """GET /MODE/FILE. Modes: ok (Range honoured), norange (Range ignored: the whole file again),
    cutonce (the first answer stops halfway, Range honoured after), cutonce-norange, cutalways
    (every answer stops halfway, Range ignored), garbage, halved (half the file, announced as such)."""

    def do_GET(self):
        mode, _, name = self.path.strip("/").partition("/")
        served = self.server.files.get(name)
        self.server.requests.append((mode, self.headers.get("Range")))
        if served is None:
            self.send_error(404)
            return
        if mode == "garbage":
            served = bytes(reversed(served))
        elif mode == "halved":
            served = served[:len(served) // 2]
        start = 0
        asked = self.headers.get("Range")
        if asked and mode in ("ok", "cutonce"):
            start = int(asked.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(served) - 1}/{len(served)}")
        else:
            self.send_response(200)
        body = served[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        first = sum(m == mode for m, _ in self.server.requests) == 1
        if mode == "cutalways" or (mode.startswith("cutonce") and first):
            self.wfile.write(body[:len(body) // 2])  # then the connection closes: a cut
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {FILE: FIXTURE.read_bytes()}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPLEDET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _base(server, mode: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{mode}"


def test_a_name_is_downloaded_converted_and_cached_once(server, cache, monkeypatch, capsys):
    monkeypatch.setenv("SIMPLEDET_WEIGHTS_URL", _base(server, "ok"))
    assert main(["weights", "list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"simpledet:{NAME} "))
    assert f" {_base(server, 'ok')}/{FILE} " in line and line.endswith(" not cached")

    model = ResNetConfig(depth=50, base_width=4).build()
    report = load_into(model, f"simpledet:{NAME}")
    direct, _ = read_mxnet_backbone(FIXTURE)  # the same file, read where it lies
    assert len(report.loaded) == len(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(value, direct.state[name]), name
    # only the converted file stays; a second use reads it and asks the server nothing
    assert sorted(p.name for p in cache.iterdir()) == [f"{NAME}.json", f"{NAME}.safetensors"]
    load_into(ResNetConfig(depth=50, base_width=4).build(), f"simpledet:{NAME}")
    assert server.requests == [("ok", None)]
    assert main(["weights", "list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"simpledet:{NAME} "))
    assert line.endswith(f" {cache / NAME}.safetensors")


@pytest.mark.parametrize(("mode", "requests"), [
    ("cutonce", [("cutonce", None), ("cutonce", "bytes={half}-")]),  # resumed where it stopped
    ("cutonce-norange", [("cutonce-norange", None), ("cutonce-norange", "bytes={half}-")]),  # sent whole again
], ids=["resumed", "restarted"])
def test_an_interrupted_download_ends_with_the_whole_file(server, tmp_path, mode, requests):
    dest = tmp_path / "cache" / FILE
    download(f"{_base(server, mode)}/{FILE}", dest, check=by_name.check_backbone_params, progress=False)
    assert dest.read_bytes() == FIXTURE.read_bytes()
    half = FIXTURE.stat().st_size // 2
    assert server.requests == [(m, r and r.format(half=half)) for m, r in requests]
    assert [p.name for p in dest.parent.iterdir()] == [FILE]


@pytest.mark.parametrize(("mode", "message"), [
    ("garbage", r"/garbage/resnet50_v1b-0000.params: not an MXNet NDArray file \(magic number"),
    ("halved", r"/halved/resnet50_v1b-0000.params: not a valid MXNet NDArray file: truncated"),
    ("cutalways", r"cannot download .*/cutalways/resnet50_v1b-0000.params: the connection broke 4 times in a row"),
    ("ok/missing", r"cannot download .*/ok/missing/resnet50_v1b-0000.params: the server answered 404"),
], ids=["corrupt", "truncated", "always-cut", "not-found"])
def test_a_bad_download_is_refused_and_leaves_nothing(server, cache, monkeypatch, mode, message):
    monkeypatch.setenv("SIMPLEDET_WEIGHTS_URL", _base(server, mode))
    with pytest.raises(UserError, match=message) as e:
        by_name.fetch_simpledet(f"simpledet:{NAME}", progress=False)
    assert f"model.backbone.pretrained=/path/to/{FILE}" in str(e.value)
    assert list(cache.iterdir()) == []  # neither a part under the final name nor a temporary file


def test_an_unreachable_address_says_how_to_pass_a_file(cache, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SIMPLEDET_WEIGHTS_URL", f"http://127.0.0.1:{port}/weights/")
    assert main(["weights", "download", f"simpledet:{NAME}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot download http://127.0.0.1:{port}/weights/{FILE} (" in err and "refused" in err
    assert f"model.backbone.pretrained=/path/to/{FILE}" in err and "SIMPLEDET_WEIGHTS_URL" in err
    assert "Traceback" not in err and list(cache.iterdir()) == []


def test_unknown_names_list_the_valid_ones(cache):
    with pytest.raises(UserError, match=r"'simpledet:resnet50v1b' \(did you mean simpledet:resnet50_v1b\?\)\. "
                                        r"SimpleDet published: simpledet:resnet-v1-50, .*resnext-152-32x8d-IN5k"):
        by_name.fetch_simpledet("simpledet:resnet50v1b")
    with pytest.raises(UserError, match=r"did you mean torchvision:ResNet18_Weights\.IMAGENET1K_V1.*"
                                        r"get_model_weights\('resnet50'\)"):
        load_into(ResNetConfig(depth=18).build(), "torchvision:ResNet18_Weights.IMAGENET_V1")
    with pytest.raises(UserError, match=r"unknown torchvision weights 'torchvision:resnet18'\. Names are"):
        by_name.fetch_torchvision("torchvision:resnet18")


def test_a_torchvision_name_reads_torch_hubs_cache(tmp_path, monkeypatch, capsys):
    """ResNet18_Weights.IMAGENET1K_V1 through torchvision's weights API, from torch.hub's cache
    seeded with a random ResNet-18 under the enum's file name: no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(3)
    tv = resnet18().state_dict()
    for name, value in tv.items():
        if name.endswith("running_var"):
            value.uniform_(0.5, 1.5)  # not a fresh layer's ones
    seeded = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    seeded.parent.mkdir(parents=True)
    torch.save(tv, seeded)

    model = ResNetConfig(depth=18).build()
    report = load_into(model, "torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    for name, value in model.state_dict().items():
        assert torch.equal(value, tv[name]), name
    assert main(["weights", "download", "torchvision:ResNet18_Weights.IMAGENET1K_V1"]) == 0
    assert capsys.readouterr().out.strip() == f"torchvision:ResNet18_Weights.IMAGENET1K_V1: {seeded}"

    seeded.write_bytes(seeded.read_bytes()[:1000])  # a damaged cache entry
    with pytest.raises(UserError, match=r"resnet18-f37072fd\.pth \(torchvision:.*delete it to download it again"):
        by_name.fetch_torchvision("torchvision:ResNet18_Weights.IMAGENET1K_V1")
