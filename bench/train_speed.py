"""Training speed and peak memory of each model family, ours and torchvision's, on one device.

For every family: images per second of a full training step (forward, backward, SGD) at
`--batch` images of HxW, after warm-up, in fp32 and with mixed precision (`--amp`), and the
peak memory allocated on GPU. torchvision's Faster, Mask and RetinaNet run in the same process on
the same inputs; `ours_tv` rows are our reproduction of those same torchvision architectures, the
fair comparison. Writes a markdown table (and JSON) for docs/benchmarks.md.

    python bench/train_speed.py --device cuda --amp --out runs/train_speed
    python bench/train_speed.py --small          # a quick run on the CPU
"""

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch
from speed import calibrate_frozen_bn, make_inputs, sgd, size_overrides, torchvision_model  # as bench/speed.py

from simpledet import build_model, load_config
from simpledet.accel.cuda_graphs import enable_cuda_graphs
from simpledet.files import atomic_write_text
from simpledet.published_results import ZOO

REPO = Path(__file__).resolve().parents[1]


def tv_faster(size):
    return torchvision_model("faster", size)


def tv_mask(size):
    return torchvision_model("mask", size)


def tv_retina(size):
    return torchvision_model("retina", size)


NHWC = [True]  # --nchw sets it False: our models in NCHW, to see what channels_last is worth


def ours(config: str, *overrides: str):
    def build(size):
        # our default fast path: frozen BN folded, NHWC (the parity configs turn both off)
        cfg = load_config(REPO / "configs" / config,
                          ["model.backbone.fuse_frozen_bn=true", *overrides, *size_overrides(size)])
        model = build_model(cfg, load_pretrained=False)
        model.check_input_values = False  # as the trainer runs it: targets checked on the CPU before they move
        return model.to(memory_format=torch.channels_last) if NHWC[0] else model
    build.ours = True
    return build


FAMILIES = [  # (row name, builder, needs masks, SimpleDet zoo config whose img/s and memory it reports)
    ("torchvision Faster R50-FPN", tv_faster, False, None),
    ("ours_tv Faster R50-FPN", ours("torchvision/fasterrcnn_resnet50_fpn.py"), False, None),
    ("ours Faster R50v1-FPN", ours("faster_r50v1_fpn_1x.py"), False, "faster_r50v1_fpn_1x"),
    ("ours Faster R50v1-C4 C5-512ROI", ours("faster_r50v1c4_c5_512roi_1x.py"), False, "faster_r50v1c4_c5_512roi_1x"),
    ("torchvision Mask R50-FPN", tv_mask, True, None),
    ("ours_tv Mask R50-FPN", ours("torchvision/maskrcnn_resnet50_fpn.py"), True, None),
    ("ours Mask R50v1-FPN", ours("mask_r50v1_fpn_1x.py"), True, "mask_r50v1_fpn_1x"),
    ("torchvision RetinaNet R50-FPN", tv_retina, False, None),
    ("ours_tv RetinaNet R50-FPN", ours("torchvision/retinanet_resnet50_fpn.py"), False, None),
    ("ours RetinaNet R50v1-FPN", ours("retina_r50v1_fpn_1x.py"), False, "retina_r50v1_fpn_1x"),
    ("ours Cascade R50v1-FPN", ours("cascade_r50v1_fpn_1x.py"), False, "cascade_r50v1_fpn_1x"),
    ("ours TridentNet R50v2-C4", ours("tridentnet_r50v2c4_c5_1x.py"), False, "tridentnet_r50v2c4_c5_1x"),
]


def zoo_cell(name: str | None) -> str:
    """SimpleDet's own training figures for a config, per GPU: "5.4 img/s, 4.2G (8X 1080Ti)"."""
    row = ZOO.get(name) if name else None
    if row is None or not row.train_speed:
        return "-"
    m = re.match(r"(\d+(?:\.\d+)?) img/s on (\d+)X ([^,]+)", row.train_speed)
    per_gpu = float(m.group(1)) / int(m.group(2))
    return f"{per_gpu:.1f} img/s, {row.train_mem} ({m.group(3)})"


def prepare(build, device, images, cuda_graphs: bool = False) -> torch.nn.Module:
    """A row's model on the device, frozen BN calibrated (both sides alike: no fp16 overflow from
    random weights); built once for every precision measured. `cuda_graphs`: ours with
    train.cuda_graphs."""
    torch.manual_seed(0)
    model = build(tuple(images[0].shape[-2:])).to(device).train()  # inputs run unresized
    calibrate_frozen_bn(model, images)
    model.ours = getattr(build, "ours", False)
    if cuda_graphs and model.ours:
        enable_cuda_graphs(model, 4, device)
    return model


def measure(model, device, amp_dtype, images, targets, steps, warmup):
    """Images per second (median of `steps` after `warmup`) and peak GiB of training steps, with a
    fresh SGD (and loss scaler for fp16)."""
    fp16 = amp_dtype == torch.float16
    opt = sgd(model, ours=model.ours, device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
            if i == warmup:  # after cuDNN's algorithm search, whose trial workspaces are no model's
                torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    if not torch.isfinite(loss):  # timed on inf / NaN arithmetic: no measurement
        raise FloatingPointError(f"non-finite training loss {float(loss)}")
    return len(images) / statistics.median(times), peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="also measure mixed precision")
    ap.add_argument("--amp-only", action="store_true", help="mixed precision alone (when GPU time is short)")
    ap.add_argument("--amp-dtype", choices=("float16", "bfloat16"), default=None,
                    help="default: float16 on GPU, bfloat16 on the CPU")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1216)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny sizes for a CPU smoke run")
    ap.add_argument("--nchw", action="store_true", help="our models in NCHW instead of their default NHWC")
    ap.add_argument("--only", default="", help="comma-separated substrings of row names to run")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="our rows with train.cuda_graphs (GPU): backbone, neck and dense head captured")
    ap.add_argument("--no-cudnn-benchmark", action="store_true",
                    help="cuDNN's heuristics instead of timing each new shape (heads whose RoI count varies)")
    ap.add_argument("--out", default="runs/train_speed")
    args = ap.parse_args()
    if args.small:
        args.height, args.width, args.steps, args.warmup = 160, 224, 1, 1
    args.amp = args.amp or args.amp_only
    precisions = ["amp"] if args.amp_only else ["fp32", "amp"] if args.amp else ["fp32"]
    device = torch.device(args.device)
    NHWC[0] = not args.nchw
    if device.type == "cuda":
        # fixed image sizes, every model alike (as our trainer's default). The RoI heads' batch
        # changes as the weights do (the mask head's foreground RoIs, TridentNet's scale-filtered
        # RoIs): each new size is searched anew unless the head pads to buckets (ours do)
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    amp_dtype = getattr(torch, args.amp_dtype) if args.amp_dtype else \
        (torch.float16 if device.type == "cuda" else torch.bfloat16)
    rows = []
    for row, build, masks, zoo in FAMILIES:
        if args.only and not any(s in row for s in args.only.split(",")):
            continue
        images, targets = make_inputs(args.batch, args.height, args.width, device, masks=masks, label_high=80)
        result = {"model": row, "zoo": zoo_cell(zoo)}
        model = None
        for precision in precisions:
            try:  # a family that fails must not hide the others
                model = model or prepare(build, device, images, args.cuda_graphs)
                ips, peak = measure(model, device, amp_dtype if precision == "amp" else None, images, targets,
                                    args.steps, args.warmup)
                result[precision] = {"images_per_s": ips, "peak_gib": peak}
            except Exception as e:
                result[precision] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
            print(row, precision, result[precision], flush=True)
        rows.append(result)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    header = (f"Training, {args.batch} images of {args.height}x{args.width}, {name}, torch {torch.__version__}"
              + (f", AMP {str(amp_dtype).replace('torch.', '')}" if args.amp else "")
              + (", our models in NCHW" if args.nchw else "")
              + (", ours with CUDA graphs (train.cuda_graphs)" if args.cuda_graphs else ""))
    titles = {"fp32": " fp32 img/s | fp32 peak GiB |", "amp": " AMP img/s | AMP peak GiB |"}
    lines = [header, "", "| model |" + "".join(titles[p] for p in precisions) + " SimpleDet zoo, per GPU |",
             "|---|" + "---|---|" * len(precisions) + "---|"]
    for r in rows:
        cells = []
        for precision in precisions:
            v = r[precision]
            if "error" in v:
                cells += ["error", "-"]
            else:
                cells += [f"{v['images_per_s']:.1f}", f"{v['peak_gib']:.2f}" if v["peak_gib"] is not None else "-"]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['zoo']} |")
    atomic_write_text(out / "train_speed.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "train_speed.json",
                      json.dumps({"device": name, "settings": vars(args), "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
