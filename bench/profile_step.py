"""Where the time of one training step goes: host (Python + dispatch + launches) against device.

For each chosen row of bench/train_speed.py: the step's wall time (synchronised), the host time
(the same step timed without waiting for the device: when it is close to the wall time, the step
is bound by the host, not the GPU), the device's busy time (sum of kernel durations), the number
of kernels and of host-device synchronisations, the host time of each part of the model, and the
operators that cost the host most.

    python bench/profile_step.py --device cuda --amp --only "ours_tv Faster,torchvision Faster"
    python bench/profile_step.py --small          # a quick run on the CPU
"""

import argparse
import json
import statistics
import time

import torch
import train_speed
from speed import calibrate_frozen_bn, make_inputs, sgd
from torch.profiler import ProfilerActivity, profile, record_function
from train_speed import FAMILIES

from simpledet.accel.cuda_graphs import enable_cuda_graphs
from simpledet.files import atomic_write_text

SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::item")  # ops that wait for the device


def annotate(model: torch.nn.Module) -> None:
    """A profiler range around each top-level part of the model (backbone, rpn, roi_heads, ...)."""
    for name, child in model.named_children():
        ranges = []

        def enter(module, args, name=name, ranges=ranges):
            ranges.append(record_function(f"part::{name}"))
            ranges[-1].__enter__()

        def leave(module, args, output, ranges=ranges):
            ranges.pop().__exit__(None, None, None)

        child.register_forward_pre_hook(enter)
        child.register_forward_hook(leave)


def step(model, optimizer, scaler, images, targets, device, amp_dtype):
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    with record_function("part::backward"):
        scaler.scale(loss).backward()
    with record_function("part::optimizer"):
        scaler.step(optimizer)
        scaler.update()


def profile_row(name, build, masks, args, device):
    size = (args.height, args.width)
    model = build(size).to(device).train()
    if args.compile and getattr(build, "ours", False):
        model.backbone.compile(dynamic=False)
    if args.cuda_graphs and getattr(build, "ours", False):
        enable_cuda_graphs(model, 4, device)
    amp_dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if args.amp else None
    optimizer = sgd(model, ours=getattr(build, "ours", False), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    images, targets = make_inputs(args.batch, *size, device, masks=masks,
                                  label_high=81 if getattr(build, "ours", False) else 91)
    calibrate_frozen_bn(model, images)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step(model, optimizer, scaler, images, targets, device, amp_dtype)
    wall, host = [], []
    for _ in range(args.steps):
        sync()
        start = time.perf_counter()
        step(model, optimizer, scaler, images, targets, device, amp_dtype)
        host.append(time.perf_counter() - start)
        sync()
        wall.append(time.perf_counter() - start)

    annotate(model)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.profiled):
            step(model, optimizer, scaler, images, targets, device, amp_dtype)
        sync()
    events = prof.events()
    n = args.profiled
    # device events, less the GPU-side copies of the part:: ranges
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith("part::")]
    device_ms = sum(e.device_time for e in kernels) / 1000 / n  # device_time is in microseconds
    # the union of kernel intervals: time the device was busy at all (kernels may overlap)
    busy, end = 0.0, float("-inf")
    for start_us, stop_us in sorted((e.time_range.start, e.time_range.end) for e in kernels):
        busy += max(0.0, stop_us - max(start_us, end))
        end = max(end, stop_us)
    span = (max(e.time_range.end for e in kernels) - min(e.time_range.start for e in kernels)) if kernels else 0.0
    by_kernel = {}
    for e in kernels:
        total, count = by_kernel.get(e.name, (0.0, 0))
        by_kernel[e.name] = (total + e.device_time, count + 1)
    top_kernels = sorted(by_kernel.items(), key=lambda kv: kv[1][0], reverse=True)[:args.top]
    parts = {}
    for e in events:
        if e.name.startswith("part::"):
            parts[e.name[6:]] = parts.get(e.name[6:], 0.0) + e.cpu_time_total / 1000 / n
    counts = {op: sum(1 for e in events if e.name == op) / n for op in SYNC_OPS}
    runtime_syncs = sum(1 for e in events if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize")) / n
    top = sorted(prof.key_averages(), key=lambda a: a.self_cpu_time_total, reverse=True)[:args.top]
    row = {
        "row": name, "wall_ms": 1000 * statistics.median(wall), "host_ms": 1000 * statistics.median(host),
        "device_busy_ms": device_ms, "device_union_ms": busy / 1000 / n, "profiled_span_ms": span / 1000 / n,
        "short_kernels": sum(1 for e in kernels if e.device_time < 5) / n, "kernels": len(kernels) / n,
        "aten_ops": sum(1 for e in events if e.name.startswith("aten::")) / n,
        "runtime_syncs": runtime_syncs, "sync_ops": counts, "host_ms_by_part": parts,
        "top_host_ops": [(a.key, a.count / n, a.self_cpu_time_total / 1000 / n) for a in top],
        "top_kernels": [(k[:90], c / n, t / 1000 / n) for k, (t, c) in top_kernels],
    }
    del model, optimizer
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="fp16 autocast on the GPU, bf16 on the CPU")
    ap.add_argument("--only", default="ours_tv Faster,torchvision Faster",
                    help="comma-separated substrings of bench/train_speed.py row names")
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1216)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profiled", type=int, default=2, help="steps under the profiler")
    ap.add_argument("--top", type=int, default=12, help="operators listed by host time")
    ap.add_argument("--small", action="store_true", help="160x224, 2 steps: a CPU smoke run")
    ap.add_argument("--nchw", action="store_true", help="our models in NCHW instead of their default NHWC")
    ap.add_argument("--no-cudnn-benchmark", action="store_true", help="cuDNN's heuristics instead of timing")
    ap.add_argument("--compile", action="store_true", help="torch.compile our backbones (fixed shapes)")
    ap.add_argument("--cuda-graphs", action="store_true", help="our models with train.cuda_graphs (GPU)")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    if args.small:
        args.height, args.width, args.steps, args.warmup, args.profiled = 160, 224, 1, 1, 1
    device = torch.device(args.device)
    train_speed.NHWC[0] = not args.nchw
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    torch.manual_seed(0)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    rows = []
    for name, build, masks, _ in FAMILIES:
        if any(w in name for w in wanted):
            rows.append(profile_row(name, build, masks, args, device))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    variant = ", ".join([("amp" if args.amp else "fp32"), ("NCHW" if args.nchw else "NHWC"),
                         "cuDNN " + ("heuristics" if args.no_cudnn_benchmark else "benchmark")]
                        + (["compiled backbone"] if args.compile else [])
                        + (["CUDA graphs"] if args.cuda_graphs else []))
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, {variant}, "
          f"batch {args.batch}, {args.height}x{args.width}")
    print("| row | wall ms | host ms | device: sum / union / span ms (profiled) | kernels (< 5 us) | aten ops | "
          "syncs (runtime / item+nonzero) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        item_nonzero = sum(r["sync_ops"].values())
        print(f"| {r['row']} | {r['wall_ms']:.1f} | {r['host_ms']:.1f} | {r['device_busy_ms']:.1f} / "
              f"{r['device_union_ms']:.1f} / {r['profiled_span_ms']:.1f} | "
              f"{r['kernels']:.0f} ({r['short_kernels']:.0f}) | "
              f"{r['aten_ops']:.0f} | {r['runtime_syncs']:.0f} / {item_nonzero:.0f} |")
    for r in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["host_ms_by_part"].items())
        print(f"{r['row']}: host ms by part: {parts}")
        for key, count, ms in r["top_host_ops"]:
            print(f"    {ms:7.2f} ms  x{count:<5.0f} {key}")
        if r["top_kernels"]:
            print("  kernels by device time:")
        for key, count, ms in r["top_kernels"]:
            print(f"    {ms:7.2f} ms  x{count:<5.0f} {key}")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
