"""What checking a detector's inputs costs (simpledet/structures/input_checks.py), on a training
step of Faster R-CNN R50-FPN (torchvision's architecture, batch 2), against an older checkout of
simpledet that has no checks, interleaved: each round runs the older tree, the trainer's path and
a direct call in turn, each in its own process.

- trainer: as `simpledet train` runs a step: the targets checked on the CPU before they move, the
  model's value checks off (model.check_input_values = False).
- direct: the model called as users call it from their own loops: every check on, the values
  read with one wait for the device.

Reports the median step time of each and, with --device cuda, the host waits per step that the
CUDA sync debug mode sees (the trainer's path must add none).

    git archive HEAD~1 simpledet configs bench | tar -x -C runs/before   # a tree without checks
    python bench/input_checks.py --before runs/before --threads 2      # CPU, 512x768, 5 rounds
    python bench/input_checks.py --before runs/before --device cuda --amp --height 800 --width 1216
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def worker(args) -> None:
    """One process: `args.steps` timed training steps (after warmup) of one variant."""
    from speed import calibrate_frozen_bn, make_inputs, our_model, sgd, sync

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, targets = make_inputs(2, args.height, args.width, device)
    cpu_targets = [{k: v.cpu() for k, v in t.items()} for t in targets]
    model = our_model("faster", (args.height, args.width)).to(device).train()
    calibrate_frozen_bn(model, images)
    optimizer = sgd(model, True, device)
    if args.variant == "trainer":
        from simpledet.structures.input_checks import check_targets, check_values

        model.check_input_values = False
    times, waits = [], []
    for i in range(args.warmup + args.steps):
        sync(device)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            start = time.perf_counter()
            if args.variant == "trainer":  # the trainer's own check, on the CPU, before the copy
                check_targets(cpu_targets, images, masks=False)
                check_values((), cpu_targets, 90)
            with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp and device.type == "cuda"):
                losses = model(images, targets)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            waits.append(sum("synchroniz" in str(w.message) for w in seen))
    print(json.dumps({"times": times, "waits": waits}))


def run_variant(args, variant: str) -> dict:
    root = args.before if variant == "before" else REPO
    command = [sys.executable, str(BENCH / "input_checks.py"), "--worker", "--variant", variant,
               "--device", args.device, "--height", str(args.height), "--width", str(args.width),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads or 0)]
    command += ["--amp"] if args.amp else []
    # the tree under test first on the path; the rest (site folders of carried wheels) after it
    env = {**os.environ, "PYTHONPATH": ":".join(filter(None, [str(root), str(BENCH), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="an older simpledet tree, without input checks")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=("before", "trainer", "direct"), help=argparse.SUPPRESS)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    variants = (["before"] if args.before else []) + ["trainer", "direct"]
    results = {v: {"times": [], "waits": []} for v in variants}
    for _ in range(args.rounds):
        for variant in variants:  # interleaved: machine noise hits every variant alike
            r = run_variant(args, variant)
            results[variant]["times"] += r["times"]
            results[variant]["waits"] += r["waits"]
    summary = {v: {"median_s": statistics.median(r["times"]), "steps": len(r["times"]),
                   "waits_per_step": max(r["waits"]) if args.device != "cpu" else None} for v, r in results.items()}
    if args.before:
        for v in ("trainer", "direct"):
            summary[v]["over_before"] = summary[v]["median_s"] / summary["before"]["median_s"]
    threads = args.threads or torch.get_num_threads()
    name = torch.cuda.get_device_name() if args.device != "cpu" else f"{platform.machine()} CPU, {threads} threads"
    print(f"{name}  {args.height}x{args.width}  batch 2  amp={args.amp}")
    for v, s in summary.items():
        ratio = f"  {s['over_before']:.3f} of before" if "over_before" in s else ""
        waits = f"  {s['waits_per_step']} host waits/step" if s["waits_per_step"] is not None else ""
        print(f"{v:8s} {s['median_s']:.4f} s ({s['steps']} steps){ratio}{waits}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "settings": vars(args), "summary": summary,
                                               "raw": results}, indent=2))


if __name__ == "__main__":
    main()
