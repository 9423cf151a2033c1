"""`simpledet serve`: the real command on a loopback port, a tiny detector behind it.

The reference for every answer is `simpledet predict --batch-size 1` on the same image file. The
service batches images that share a padded canvas, which the model lays out exactly as one image
alone; what remains is the float rounding of convolutions run on a batch instead of one image,
so detections are compared as the parity tests compare them (boxes within 0.01 px, scores within
1e-4, same categories), unordered, since two scores within rounding may swap places.
"""

import asyncio
import dataclasses
import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[test,serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[test,serve]'")
pytest.importorskip("prometheus_client", reason="the serve extra is not installed: pip install -e '.[test,serve]'")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from simpledet.cli import main  # noqa: E402
from simpledet.serve.batcher import BatcherClosed, DynamicBatcher  # noqa: E402
from simpledet.serve.metrics import ServiceMetrics  # noqa: E402

from .helpers import QUICKSTART  # noqa: E402

MAX_BYTES = 200_000
# of the shapes val set: 128x128 images, and one of 128x160 and one of 160x128 (other canvases)
IMAGE_INDICES = (0, 1, 2, 3, 4, 5, 6, 8)


def make_checkpoint(folder: Path, shapes_dir: Path) -> Path:
    """A quick-start detector on 64 px inputs with seeded random weights, saved as `train` saves
    one (config and categories beside it). Its classifier is scaled up so that scores spread out
    (0.3 to 0.9 instead of all near 1/5) and a score threshold of 0.3 keeps about 20 per image."""
    from simpledet import build_model, load_config
    from simpledet.config import to_dict
    from simpledet.engine.checkpoint import save_weights

    cfg = load_config(QUICKSTART, ["model.input.min_size=(64,)", "model.input.max_size=80",
                                   "model.roi_heads.score_thresh=0.3", "train.device=cpu"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(8)
    categories = sorted(json.loads((shapes_dir / "annotations" / "val.json").read_text())["categories"],
                        key=lambda c: c["id"])
    weights = folder / "model.safetensors"
    save_weights(model, weights, {"iteration": 0, "config": to_dict(cfg),
                                  "categories": [c["name"] for c in categories],
                                  "category_ids": [c["id"] for c in categories]})
    return weights


def served_images(shapes_dir: Path) -> list[Path]:
    paths = sorted((shapes_dir / "val").glob("*.png"))
    return [paths[i] for i in IMAGE_INDICES]


def category_names(shapes_dir: Path) -> dict[int, str]:
    data = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    return {c["id"]: c["name"] for c in data["categories"]}


def predict_records(weights: Path, images: list[Path], out: Path, *flags: str) -> dict[str, list[dict]]:
    """`simpledet predict`'s records for each image, run one image at a time."""
    args = ["predict", "--weights", str(weights), *map(str, images), "--out", str(out), "--batch-size", "1"]
    assert main([*args, *flags]) == 0
    by_image: dict[str, list[dict]] = {str(path): [] for path in images}
    for record in json.loads(out.read_text()):
        by_image[record["file_name"]].append(record)
    return by_image


def assert_same_detections(got: list[dict], expected: list[dict], names: dict[int, str]) -> None:
    assert len(got) == len(expected)
    unmatched = list(got)
    for want in expected:
        for det in unmatched:
            if (det["category_id"] == want["category_id"] and abs(det["score"] - want["score"]) <= 1e-4
                    and max(abs(a - b) for a, b in zip(det["bbox"], want["bbox"])) <= 0.01):
                assert set(det) == {"bbox", "score", "category_id", "category_name"}
                assert det["category_name"] == names[det["category_id"]]
                unmatched.remove(det)
                break
        else:
            raise AssertionError(f"no served detection matches predict's {want}")


class Client:
    """Requests to the service on a loopback port, one connection each."""

    def __init__(self, port: int | None = None) -> None:
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict | str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            text = response.read().decode()
            is_json = response.getheader("content-type", "").startswith("application/json")
            return response.status, json.loads(text) if is_json else text
        finally:
            conn.close()

    def detect(self, data: bytes, query: str = "", content_type: str = "image/png") -> tuple[int, dict]:
        return self.request("POST", "/v1/detect" + query, data, {"Content-Type": content_type})

    def metrics(self) -> dict[tuple[str, tuple], float]:
        status, text = self.request("GET", "/metrics")
        assert status == 200
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}


class Server(Client):
    """`python -m simpledet serve ... --port 0` in a subprocess; its output goes to a file (a pipe
    nobody reads would fill up and block it)."""

    def __init__(self, weights: Path, folder: Path) -> None:
        self.log = folder / "server.log"
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simpledet", "serve", "--weights", str(weights), "--port", "0",
             "--max-batch", "8", "--max-wait-ms", "20", "--max-bytes", str(MAX_BYTES)],
            stdout=self._log_file, stderr=subprocess.STDOUT)
        super().__init__()

    @property
    def port(self) -> int:
        """Waits for the line that names the URL (printed once the model is loaded)."""
        deadline = time.monotonic() + 180
        while self._port is None:
            for line in self.log.read_text().splitlines():
                if line.startswith("simpledet serve: http://127.0.0.1:"):
                    self._port = int(line.split("127.0.0.1:")[1].split("/")[0])
            assert self.proc.poll() is None, f"the server exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"no URL after 180 s: {self.log.read_text()}"
            time.sleep(0.05)
        return self._port

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self._log_file.close()


@contextmanager
def serving_in_thread(app):
    """The app on uvicorn in a thread of this process, on a free loopback port: a Client to it."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    try:
        yield Client(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, shapes_dir) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve_model"), shapes_dir)


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    server = Server(weights, tmp_path_factory.mktemp("serve_log"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(server, weights, shapes_dir, tmp_path_factory) -> dict[str, list[dict]]:
    # computed while the server process starts (it was started first)
    return predict_records(weights, served_images(shapes_dir), tmp_path_factory.mktemp("predict") / "preds.json")


def multipart(data: bytes, field: str = "file") -> tuple[bytes, str]:
    boundary = "simpledet-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"image.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def png_bytes(width: int, height: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims another size: a few bytes that would decode to a huge image."""
    import struct
    import zlib

    data = bytearray(png_bytes(1, 1))
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def declared_too_large(server: Server) -> tuple[int, dict]:
    """Headers that declare a body over the limit, then a little of it: refused without waiting
    for the rest."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("POST", "/v1/detect")
        conn.putheader("Content-Type", "image/jpeg")
        conn.putheader("Content-Length", str(10 * MAX_BYTES))
        conn.endheaders()
        conn.send(b"\xff\xd8" + b"\0" * 1000)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def chunked_too_large(server: Server) -> tuple[int, dict]:
    """A chunked body (no Content-Length: http.client sends an iterator's pieces as chunks) that
    grows past the limit."""
    chunks = [b"\x89PNG" + b"\0" * 9996] + [b"\0" * 10_000] * (MAX_BYTES // 10_000 + 1)
    return server.request("POST", "/v1/detect", iter(chunks), {"Content-Type": "image/png"})


def bad_requests(server: Server, image: bytes) -> list[tuple]:
    """(what, send, expected status, words the error names)."""
    form_without_file, form_type = multipart(image, field="picture")
    return [
        ("empty body", lambda: server.detect(b""), 400, "empty"),
        ("not an image", lambda: server.detect(b"name,score\nperson,0.9\n", content_type="text/csv"), 400,
         "not an image"),
        ("truncated image", lambda: server.detect(image[: len(image) // 2]), 400, "cannot be decoded"),
        ("Content-Length over --max-bytes", lambda: declared_too_large(server), 413, "Content-Length"),
        ("chunked body over --max-bytes", lambda: chunked_too_large(server), 413, "--max-bytes"),
        ("wrong method", lambda: server.request("GET", "/v1/detect"), 405, "GET is not allowed"),
        ("wrong path", lambda: server.request("POST", "/v1/detections", image), 404, "/v1/detections"),
        ("form without file", lambda: server.detect(form_without_file, content_type=form_type), 400, "picture"),
        ("bad score_thresh", lambda: server.detect(image, "?score_thresh=high"), 400, "'high'"),
        ("misspelt parameter", lambda: server.detect(image, "?score_threshold=0.5"), 400, "score_threshold"),
        ("image too thin for the model", lambda: server.detect(png_bytes(600, 2)), 422, "600x2"),
        ("too many pixels", lambda: server.detect(png_claiming(10_000, 8_000)), 413, "80000000 pixels"),
    ]


def test_concurrent_clients_get_predicts_answers_and_bad_requests_4xx(server, expected, shapes_dir):
    images = served_images(shapes_dir)
    names = category_names(shapes_dir)
    bad = bad_requests(server, images[0].read_bytes())
    clients, per_client = 16, 3

    def client(c: int) -> list[tuple]:
        rng = random.Random(c)
        jobs = [("good", images[(c * per_client + r) % len(images)], r == 1) for r in range(per_client)]
        jobs += [("bad", bad[c % len(bad)]), ("bad", bad[(c + 5) % len(bad)])]
        rng.shuffle(jobs)  # bad requests interleaved with good ones
        results = []
        for job in jobs:
            if job[0] == "good":
                _, path, as_form = job
                body, content_type = multipart(path.read_bytes()) if as_form else (path.read_bytes(), "image/png")
                results.append((job, server.detect(body, content_type=content_type)))
            else:
                results.append((job, job[1][1]()))
        return results

    with ThreadPoolExecutor(clients) as pool:
        answers = [a for results in pool.map(client, range(clients)) for a in results]

    good = 0
    for job, (status, body) in answers:
        if job[0] == "good":
            path = job[1]
            assert status == 200, body
            with Image.open(path) as im:
                assert (body["width"], body["height"]) == im.size
            assert_same_detections(body["detections"], expected[str(path)], names)
            good += 1
        else:
            what, _, want_status, words = job[1]
            assert status == want_status and words in body["error"], (what, status, body)
    assert good == clients * per_client

    status, health = server.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    metrics = server.metrics()
    statuses = {dict(labels)["status"] for (name, labels) in metrics if name == "simpledet_requests_total"}
    assert "500" not in statuses and {"200", "400", "404", "405", "413", "422"} <= statuses
    assert metrics[("simpledet_requests_total", (("path", "/v1/detect"), ("status", "200")))] == good
    # the images were batched: more images than model calls
    assert metrics[("simpledet_batch_size_sum", ())] > metrics[("simpledet_batch_size_count", ())]
    assert metrics[("simpledet_queue_depth", ())] == 0 and metrics[("simpledet_detect_in_progress", ())] == 0
    assert metrics[("simpledet_detect_latency_seconds_count", ())] >= good


def test_score_thresh_filters_like_predicts_flag(server, weights, expected, shapes_dir, tmp_path):
    images = served_images(shapes_dir)[:3]
    names = category_names(shapes_dir)
    stricter = predict_records(weights, images, tmp_path / "preds.json", "--score-thresh", "0.4")
    for path in images:
        status, body = server.detect(path.read_bytes(), "?score_thresh=0.4")
        assert status == 200
        assert 0 < len(body["detections"]) < len(expected[str(path)])
        assert_same_detections(body["detections"], stricter[str(path)], names)
        # below the model's own threshold (0.3): nothing is added
        status, body = server.detect(path.read_bytes(), "?score_thresh=0.1")
        assert status == 200
        assert_same_detections(body["detections"], expected[str(path)], names)


def test_page_is_self_contained(server):
    status, page = server.request("GET", "/")
    assert status == 200
    assert '<input type="file"' in page and "<canvas" in page and "/v1/detect" in page
    assert "http://" not in page and "https://" not in page  # no CDN: nothing loaded from elsewhere


def test_without_the_extra_serve_says_what_to_install(capsys, monkeypatch, tmp_path):
    import simpledet.cli.serve as serve_cli

    monkeypatch.setattr(serve_cli, "_importable", lambda name: name != "uvicorn")
    assert main(["serve", "--weights", str(tmp_path / "model.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "uvicorn" in err and "pip install 'simpledet-torch[serve]'" in err


@pytest.mark.parametrize(("flags", "words"), [
    (["--max-batch", "0"], "--max-batch must be at least 1"),
    (["--max-bytes", "-5"], "--max-bytes must be at least 1"),
    ([], "weights file not found"),
])
def test_bad_flags_exit_2(capsys, tmp_path, flags, words):
    assert main(["serve", "--weights", str(tmp_path / "none.safetensors"), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


# ---------------------------------------------------------------- the batcher alone

def run_batcher(coroutine_fn, run_batch, max_batch: int, max_wait: float):
    async def scenario():
        batcher = DynamicBatcher(run_batch, max_batch, max_wait, ServiceMetrics(max_batch))
        batcher.start()
        return await coroutine_fn(batcher)
    return asyncio.run(scenario())


def test_batcher_batches_by_key_oldest_first_and_answers_each_caller():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        return [item * 10 for item in items]

    async def scenario(batcher):
        # keys: even items on one canvas, odd ones on another
        results = await asyncio.gather(*(batcher.submit(i, key=i % 2) for i in range(11)))
        await batcher.close()
        return results

    results = run_batcher(scenario, run_batch, max_batch=4, max_wait=0.05)
    assert results == [i * 10 for i in range(11)]
    assert sorted(i for call in calls for i in call) == list(range(11))
    for call in calls:
        assert len(call) <= 4 and len({i % 2 for i in call}) == 1 and call == sorted(call)
    assert calls[0] == [0, 2, 4, 6]  # the oldest image's key first, its batch full


def test_batcher_waits_max_wait_for_company_but_not_when_full():
    async def lone(batcher):
        start = time.monotonic()
        await batcher.submit(1, key=None)
        elapsed = time.monotonic() - start
        await batcher.close()
        return elapsed

    assert run_batcher(lone, lambda items: items, max_batch=8, max_wait=0.2) >= 0.2

    async def full(batcher):
        start = time.monotonic()
        await asyncio.gather(*(batcher.submit(i, key=None) for i in range(8)))
        elapsed = time.monotonic() - start
        await batcher.close()
        return elapsed

    assert run_batcher(full, lambda items: items, max_batch=8, max_wait=30.0) < 10.0


def test_batcher_close_runs_all_that_wait_then_refuses():
    async def scenario(batcher):
        pending = [asyncio.ensure_future(batcher.submit(i, key=i % 3)) for i in range(7)]
        await asyncio.sleep(0)  # they are queued, waiting for company (30 s)
        start = time.monotonic()
        await batcher.close()
        closed_in = time.monotonic() - start
        with pytest.raises(BatcherClosed):
            await batcher.submit(99, key=0)
        return [p.result() for p in pending], closed_in

    results, closed_in = run_batcher(scenario, lambda items: [-i for i in items], max_batch=8, max_wait=30.0)
    assert results == [-i for i in range(7)] and closed_in < 10.0


def test_batcher_failure_fails_only_the_image_the_model_refuses():
    def run_batch(items):
        if "bad" in items:
            raise ValueError("cannot take 'bad'")
        return [item.upper() for item in items]

    async def scenario(batcher):
        return await asyncio.gather(*(batcher.submit(x, key=None) for x in ["a", "bad", "c"]),
                                    return_exceptions=True)

    a, bad, c = run_batcher(scenario, run_batch, max_batch=8, max_wait=0.05)
    assert (a, c) == ("A", "C") and isinstance(bad, ValueError) and "bad" in str(bad)


def test_worker_processes_build_their_app_from_the_settings(weights, shapes_dir, monkeypatch):
    """`--workers N`: each uvicorn worker calls app_from_environment, which reads the settings the
    command left in the environment and loads its own model."""
    from simpledet.serve.app import SETTINGS_VARIABLE, ServeSettings, app_from_environment

    settings = ServeSettings(weights=str(weights), max_batch=3, max_wait_ms=5.0, max_bytes=123_456)
    monkeypatch.setenv(SETTINGS_VARIABLE, json.dumps(dataclasses.asdict(settings)))
    with serving_in_thread(app_from_environment()) as client:
        status, health = client.request("GET", "/healthz")
        assert status == 200 and (health["max_batch"], health["max_wait_ms"], health["max_bytes"]) == (3, 5.0, 123_456)
        status, body = client.detect(served_images(shapes_dir)[0].read_bytes())
        assert status == 200 and body["detections"]


# ---------------------------------------------------------------- an exported ONNX file

def mean_pixel_onnx(path: Path, names: list[str], ids: list[int]) -> tuple[list[float], int]:
    """A detector in ONNX with the exported graphs' inputs, outputs and category metadata, small
    enough to build by hand: one box at fixed place, of category ids[2], scored with the image's
    mean pixel value (so each image gets its own answer)."""
    import onnx
    from onnx import TensorProto, helper

    from simpledet.deploy.export_onnx import METADATA_IDS, METADATA_NAMES

    box = [2.0, 3.0, 42.5, 30.25]
    nodes = [
        helper.make_node("Constant", [], ["boxes"], value=helper.make_tensor("box", TensorProto.FLOAT, [1, 4], box)),
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.INT64, [1], [1])),
        helper.make_node("Reshape", ["mean", "one"], ["scores"]),
        helper.make_node("Constant", [], ["labels"],
                         value=helper.make_tensor("label", TensorProto.INT64, [1], [ids[2]])),
    ]
    graph = helper.make_graph(
        nodes, "mean_pixel_detector", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, "h", "w"])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in ((METADATA_NAMES, names), (METADATA_IDS, ids)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, path)
    return box, ids[2]


def test_serves_an_onnx_file(shapes_dir, tmp_path, capsys):
    pytest.importorskip("simpledet.deploy.onnx_runtime", reason="simpledet.deploy (ONNX support) is not present")
    pytest.importorskip("onnx", reason="the deploy extra is not installed")
    pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    from simpledet.serve.app import build_app
    from simpledet.serve.model import load_served_model

    names = category_names(shapes_dir)
    path = tmp_path / "detector.onnx"
    box, category = mean_pixel_onnx(path, [names[i] for i in sorted(names)], sorted(names))
    images = served_images(shapes_dir)[:4]
    with serving_in_thread(build_app(load_served_model(path), max_batch=4, max_wait_ms=20)) as client:
        with ThreadPoolExecutor(len(images)) as pool:
            answers = list(pool.map(lambda p: client.detect(p.read_bytes()), images))
    for image, (status, body) in zip(images, answers):
        assert status == 200
        with Image.open(image) as im:
            mean = float(np.asarray(im.convert("RGB"), dtype=np.float64).mean() / 255)
        [det] = body["detections"]
        assert det["bbox"] == [2.0, 3.0, 40.5, 27.25]  # x1y1x2y2 -> xywh
        assert det["category_id"] == category and det["category_name"] == names[category]
        assert abs(det["score"] - mean) <= 2e-5  # float32 mean, rounded to 5 decimals
    # an ONNX file carries its own settings: a CONFIG beside it is a mistake
    assert main(["serve", str(QUICKSTART), "--weights", str(path)]) == 2
    assert "ONNX file carries its own settings" in capsys.readouterr().err


# ---------------------------------------------------------------- last: it stops the server

def test_sigterm_answers_requests_in_flight_then_exits_0(server, expected, shapes_dir):
    images = served_images(shapes_dir)[:4]
    names = category_names(shapes_dir)
    sent = []
    for path in images:  # each request half sent: certainly in flight when the signal comes
        data = path.read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.putrequest("POST", "/v1/detect")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        conn.send(data[: len(data) // 2])
        sent.append((conn, data, path))
    deadline = time.monotonic() + 60
    while server.metrics()[("simpledet_detect_in_progress", ())] < len(images):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert server.proc.poll() is None  # still waiting for the requests it has
    for conn, data, path in sent:
        conn.send(data[len(data) // 2:])
        response = conn.getresponse()
        assert response.status == 200
        assert_same_detections(json.loads(response.read())["detections"], expected[str(path)], names)
        conn.close()
    assert server.proc.wait(timeout=60) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log
