"""Load on `simpledet serve`: requests per second and p50 / p99 latency at 1, 8 and 32 concurrent
clients, against the same model called directly.

    direct    C threads call the model (simpledet.serve.model, as the service does) on one decoded
              image per call, one call at a time: a service without batching. Its throughput is
              that of one-at-a-time inference at every C, the baseline batching must beat
    service   C client threads, each on its own keep-alive connection, POST the image files to
              `python -m simpledet serve` (started here, in a subprocess, on a free loopback port);
              latency counts HTTP, decoding, waiting for a batch and the answer's JSON

The model is the quick-start detector (128 px inputs) with seeded random weights unless --weights
names a checkpoint; the images are the synthetic shapes (128x128, some 128x160 / 160x128). Each
device given (default: the CPU, and the GPU when there is one) gets its own table.

    python bench/serve_load.py                      # CPU (and GPU), 1 / 8 / 32 clients
    python bench/serve_load.py --requests 400 --max-batch 16 --devices cuda
"""

import argparse
import http.client
import json
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from simpledet.files import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs/quickstart/faster_r18_fpn_shapes.py"


def random_checkpoint(folder: Path, categories: list[dict]) -> Path:
    """The quick-start detector with seeded random weights, saved as `train` saves a checkpoint."""
    from simpledet import build_model, load_config
    from simpledet.config import to_dict
    from simpledet.engine.checkpoint import save_weights

    cfg = load_config(QUICKSTART)
    torch.manual_seed(0)
    weights = folder / "model.safetensors"
    save_weights(build_model(cfg), weights, {"iteration": 0, "config": to_dict(cfg),
                                             "categories": [c["name"] for c in categories],
                                             "category_ids": [c["id"] for c in categories]})
    return weights


def run_clients(clients: int, total: int, call) -> dict:
    """`total` calls of call(i) -> ok, spread over `clients` threads; rates and latency quantiles."""
    latencies: list[float] = []
    failed = 0
    next_index = 0
    lock = threading.Lock()

    def client() -> None:
        nonlocal failed, next_index
        with call() as one_call:
            while True:
                with lock:
                    if next_index >= total:
                        return
                    i = next_index
                    next_index += 1
                start = time.perf_counter()
                ok = one_call(i)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    failed += not ok

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - start
    percent = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"clients": clients, "requests": total, "failed": failed, "requests_per_s": total / wall,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percent[98]}


class DirectCalls:
    """A context giving call(i): the model on image i % n, one image per call, one call at a time
    (a lock: the model is not meant to run from two threads at once), so that with C clients
    this is a service without batching."""

    def __init__(self, model, images) -> None:
        self.model, self.images = model, images
        self.lock = threading.Lock()

    def __call__(self):
        return self

    def __enter__(self):
        return self.call

    def call(self, i: int) -> bool:
        with self.lock:
            return len(self.model([self.images[i % len(self.images)]])) == 1

    def __exit__(self, *exc) -> None:
        pass


class ServiceCalls:
    """A context giving call(i): POST image file i % n on this client's own connection."""

    def __init__(self, port: int, files: list[bytes]) -> None:
        self.port, self.files = port, files

    def __call__(self):
        return self._Client(self.port, self.files)

    class _Client:
        def __init__(self, port: int, files: list[bytes]) -> None:
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            self.files = files

        def __enter__(self):
            return self.post

        def __exit__(self, *exc) -> None:
            self.conn.close()

        def post(self, i: int) -> bool:
            try:
                self.conn.request("POST", "/v1/detect", body=self.files[i % len(self.files)],
                                  headers={"Content-Type": "image/png"})
                response = self.conn.getresponse()
                body = response.read()
                return response.status == 200 and "detections" in json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                self.conn.close()  # reconnects on the next request
                return False


def batch_counts(port: int) -> tuple[float, float]:
    """(images, model calls) so far, from the service's /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    values = {}
    for line in text.splitlines():
        if line.startswith(("simpledet_batch_size_sum", "simpledet_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    return values["simpledet_batch_size_sum"], values["simpledet_batch_size_count"]


def start_service(command: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    out = open(log, "w")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        for line in log.read_text().splitlines():
            if line.startswith("simpledet serve: http://127.0.0.1:"):
                return proc, int(line.split("127.0.0.1:")[1].split("/")[0])
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the service did not start:\n{log.read_text()}")
        time.sleep(0.1)


def bench_device(device: str, weights: Path, image_paths: list[Path], args, folder: Path) -> dict:
    from simpledet.data.image_io import read_image
    from simpledet.serve.model import load_served_model

    levels = [int(c) for c in args.clients.split(",")]
    rows = []
    model = load_served_model(weights, overrides=[f"train.device={device}"])
    images = [read_image(path) for path in image_paths]
    run_clients(1, args.warmup, DirectCalls(model, images))
    for clients in levels:
        rows.append({"mode": "direct", **run_clients(clients, max(args.requests, 4 * clients),
                                                     DirectCalls(model, images))})
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    command = [sys.executable, "-m", "simpledet", "serve", "--weights", str(weights), "--port", "0",
               "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--set", f"train.device={device}"]
    proc, port = start_service(command, folder / f"serve_{device.replace(':', '_')}.log")
    try:
        files = [path.read_bytes() for path in image_paths]
        run_clients(1, args.warmup, ServiceCalls(port, files))
        for clients in levels:
            images_before, calls_before = batch_counts(port)
            row = run_clients(clients, max(args.requests, 4 * clients), ServiceCalls(port, files))
            images_after, calls_after = batch_counts(port)
            row["mean_batch"] = (images_after - images_before) / max(1.0, calls_after - calls_before)
            rows.append({"mode": "service", **row})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return {"device": device, "device_name": name, "service_command": shlex.join(command), "rows": rows}


def print_table(result: dict) -> None:
    print(f"\n{result['device']} ({result['device_name']})")
    print(f"service: {result['service_command']}")
    print(f"{'mode':8s} {'clients':>7s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'failed':>6s} {'batch':>6s}")
    for row in result["rows"]:
        batch = f"{row['mean_batch']:6.2f}" if "mean_batch" in row else f"{'1':>6s}"
        print(f"{row['mode']:8s} {row['clients']:7d} {row['requests_per_s']:8.1f} {row['p50_ms']:8.1f} "
              f"{row['p99_ms']:8.1f} {row['failed']:6d} {batch}")
    one_at_a_time = next(r for r in result["rows"] if r["mode"] == "direct" and r["clients"] == 1)
    busiest = max((r for r in result["rows"] if r["mode"] == "service"), key=lambda r: r["clients"])
    print(f"service at {busiest['clients']} clients / one-at-a-time direct calls: "
          f"{busiest['requests_per_s'] / one_at_a_time['requests_per_s']:.2f}x the throughput")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    ap.add_argument("--devices", default=default_devices, help=f"comma-separated (default {default_devices})")
    ap.add_argument("--weights", type=Path, help="a checkpoint of ours (default: the quick-start model, random)")
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels (default 1,8,32)")
    ap.add_argument("--requests", type=int, default=96, help="requests per level, at least 4 per client")
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=8, dest="max_batch")
    ap.add_argument("--max-wait-ms", type=float, default=10.0, dest="max_wait_ms")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    from simpledet.data.shapes import generate_shapes

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        folder = Path(tmp)
        paths = generate_shapes(folder / "shapes", num_train=0, num_val=32, seed=0)
        categories = json.loads(paths["val_ann"].read_text())["categories"]
        weights = args.weights or random_checkpoint(folder, categories)
        image_paths = sorted(paths["val_images"].glob("*.png"))
        print(f"command: {shlex.join([sys.executable, *sys.argv])}")
        print(f"model: {weights if args.weights else 'the quick-start detector, random weights'}; "
              f"{len(image_paths)} shapes images; torch {torch.__version__}")
        results = []
        for device in args.devices.split(","):
            results.append(bench_device(device, weights, image_paths, args, folder))
            print_table(results[-1])
    if args.json:
        atomic_write_text(args.json, json.dumps({"settings": vars(args) | {"weights": str(args.weights)},
                                                 "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
