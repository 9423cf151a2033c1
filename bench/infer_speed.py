"""Inference speed of our Faster / Mask R-CNN and RetinaNet R50-FPN against torchvision's.

Same architecture and the same random weights (shared, frozen BN calibrated) as bench/speed.py,
the same 800x1333 inputs, both models in
`torch.inference_mode`, interleaved in one process. Two numbers per model:
  latency     median seconds for one image (batch 1), pre- and post-processing included;
  throughput  images per second at batch 8 (one call on a list of 8 images).
`--half` runs both under fp16 autocast (GPU only): our heads decode boxes and score in fp32.

    python bench/infer_speed.py                          # CPU, 2 threads is this machine
    python bench/infer_speed.py --device cuda --half     # GPU
    python bench/infer_speed.py --small                  # a quick end-to-end run on the CPU
"""

import argparse
import json
import platform
import statistics

import torch
from speed import CONFIGS, make_inputs, matched_pair, time_inference

from simpledet.files import atomic_write_text


def measure(models: dict, images: list, device, half: bool, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call for each model, calls interleaved so machine noise hits both."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + repeats):
        for name, model in models.items():
            t = time_inference(model, images, device, half)
            if i >= warmup:
                times[name].append(t)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=sorted(CONFIGS), default="faster")
    ap.add_argument("--half", action="store_true", help="fp16 autocast (GPU)")
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1333)
    ap.add_argument("--batch", type=int, default=8, help="the throughput batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--small", action="store_true", help="tiny sizes: an end-to-end check, not a measurement")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    if args.small:
        args.height, args.width, args.batch, args.repeats, args.warmup = 160, 224, 2, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    half = args.half and device.type == "cuda"
    torch.manual_seed(0)
    size = (args.height, args.width)
    images, _ = make_inputs(args.batch, args.height, args.width, device)
    models = {name: model.eval() for name, model in matched_pair(args.model, size, device, images).items()}

    latency = measure(models, images[:1], device, half, args.warmup, args.repeats)
    batched = measure(models, images, device, half, args.warmup, args.repeats)
    results = {name: {"latency_s": latency[name], "throughput_img_s": args.batch / batched[name]} for name in models}
    results["latency_ratio_ours_over_torchvision"] = latency["ours"] / latency["torchvision"]
    results["throughput_ratio_ours_over_torchvision"] = \
        results["ours"]["throughput_img_s"] / results["torchvision"]["throughput_img_s"]
    if device.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(device)
    else:
        results["device_name"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    results["settings"] = vars(args) | {"torch": torch.__version__}

    print(f"{args.model} inference: {results['device_name']}  input {args.height}x{args.width}  half={half}")
    for name in models:
        r = results[name]
        print(f"{name:12s} latency (batch 1) {r['latency_s'] * 1000:8.1f} ms   "
              f"throughput (batch {args.batch}) {r['throughput_img_s']:7.2f} img/s")
    print(f"ours / torchvision: latency {results['latency_ratio_ours_over_torchvision']:.3f} (lower is better), "
          f"throughput {results['throughput_ratio_ours_over_torchvision']:.3f}x")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
