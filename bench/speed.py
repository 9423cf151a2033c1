"""Speed of our Faster / Mask R-CNN and RetinaNet R50-FPN against torchvision's *_resnet50_fpn.

Same architecture (ResNet-50 v1b, FPN, frozen BN, stem + stage 1 frozen), the same random weights
(torchvision's, loaded into ours: share_weights; frozen BN calibrated on the input:
calibrate_frozen_bn), the same inputs, the two models interleaved in one process so that machine
noise hits both. Reports
median seconds per training step (batch 2) and per inference (1 image), and the ratio
ours / torchvision (below 1.0: we are faster).

    python bench/speed.py [--model faster|mask|retina]   # CPU, 800x1216
    python bench/speed.py --device cuda --amp   # GPU, mixed precision; adds img/s and peak memory
"""

import argparse
import copy
import json
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from simpledet import build_model, load_config
from simpledet.accel.cuda_graphs import enable_cuda_graphs
from simpledet.config import TrainConfig
from simpledet.engine.optimizer import build_optimizer
from simpledet.files import atomic_write_text
from simpledet.weights.torchvision import convert_torchvision

REPO = Path(__file__).resolve().parents[1]


def torchvision_model(family: str = "faster", size: tuple[int, int] | None = None) -> torch.nn.Module:
    """torchvision's *_resnet50_fpn as built around a pretrained backbone: frozen BN, 3 trainable
    stages. `size` (h, w): the resize target, so that inputs of that size run unresized (800x1216
    and 800x1333 are unresized by the default 800 / 1333 rule anyway)."""
    if family == "retina":
        body = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
        model = RetinaNet(body, num_classes=91)
    else:
        detector = MaskRCNN if family == "mask" else FasterRCNN
        model = detector(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes=91)
    if size is not None:
        model.transform.min_size, model.transform.max_size = (min(size),), max(size)
    return model


def size_overrides(size: tuple[int, int] | None) -> list[str]:
    """Our config's resize rule set so that inputs of `size` run unresized (see torchvision_model)."""
    if size is None:
        return []
    short, long = min(size), max(size)
    return [f"model.input.min_size=({short},)", f"model.input.max_size={long}",
            f"model.input.test_min_size={short}", f"model.input.test_max_size={long}"]


CONFIGS = {"faster": "fasterrcnn", "mask": "maskrcnn", "retina": "retinanet"}


def our_model(family: str = "faster", size: tuple[int, int] | None = None) -> torch.nn.Module:
    # torchvision's architecture and settings, with our default fast path (frozen BN folded,
    # NHWC memory format) instead of the parity config's bit-exact torchvision arithmetic
    cfg = load_config(REPO / f"configs/torchvision/{CONFIGS[family]}_resnet50_fpn.py",
                      ["model.backbone.fuse_frozen_bn=true", "train.channels_last=true", *size_overrides(size)])
    return build_model(cfg).to(memory_format=torch.channels_last)


def matched_pair(family: str, size: tuple[int, int], device: torch.device,
                 images: list[torch.Tensor]) -> dict[str, torch.nn.Module]:
    """torchvision's model and ours, on `device`, with the same weights, frozen BN calibrated on
    (up to two of) `images`, and cuDNN's benchmark mode on for the fixed input size."""
    models = {"torchvision": torchvision_model(family, size).to(device),
              "ours": our_model(family, size).to(device)}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes; both models alike
    calibrate_frozen_bn(models["torchvision"], images[:2])
    share_weights(models["ours"], models["torchvision"])  # the same weights: the same detections
    return models


def share_weights(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    """torchvision's weights (and frozen BN statistics) in our model, through the converter that
    `simpledet convert torchvision` uses: both models then compute the same detections (the
    parity tests check it), so both sides of a timing do the same work, NMS and all."""
    state, _ = convert_torchvision(reference.state_dict())
    ours.load_state_dict(state)


@torch.no_grad()
def calibrate_frozen_bn(model: torch.nn.Module, images: list[torch.Tensor]) -> None:
    """Sets every frozen BN's statistics to those of its input on `images`, layer after layer.

    With random weights a deep ResNet's activations grow block after block (to ~1e4 at C4 for the
    zoo's v1 backbones), past fp16's range: mixed-precision steps would then time inf and NaN
    arithmetic. Calibrated, activations have the size a pretrained network's have. Applied to
    both sides of every comparison; it changes values, not the work done."""
    # our blocks fold frozen BN into their convolutions (their fuse_frozen_bn setting): unfolded
    # while calibrating, so that the BN modules run and see their inputs
    folded = [m for m in model.modules() if getattr(m, "fuse_frozen_bn", False)]
    for m in folded:
        m.fuse_frozen_bn = False

    def take_statistics(module, args):
        x = args[0].float()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    hooks = [m.register_forward_pre_hook(take_statistics) for m in model.modules()
             if type(m).__name__ == "FrozenBatchNorm2d"]  # ours and torchvision's
    was_training = model.training
    try:
        model.eval()(images)
    finally:
        for h in hooks:
            h.remove()
        for m in folded:
            m.fuse_frozen_bn = True
        model.train(was_training)


def make_inputs(batch: int, height: int, width: int, device, seed: int = 0, masks: bool = False,
                label_high: int = 91):
    """Random images and 8 boxes each, labels drawn from 1..label_high-1 (91: torchvision's COCO
    category ids; the 80-class zoo models take 80)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, height, width, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        n = 8
        xy = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
        wh = 32 + torch.rand(n, 2, generator=g) * torch.tensor([width * 0.3, height * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        target = {"boxes": boxes.to(device), "labels": torch.randint(1, label_high, (n,), generator=g).to(device)}
        if masks:  # each box filled
            m = torch.zeros(n, height, width, dtype=torch.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                m[i, y1:y2, x1:x2] = 1
            target["masks"] = m.to(device)
        targets.append(target)
    return images, targets


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train_step(model, optimizer, images, targets, device, amp, scaler=None):
    """Seconds for one training step (forward, backward, SGD), as our trainer runs it: fp16
    autocast with dynamic loss scaling when `amp` on a GPU (`scaler`), bf16 on the CPU."""
    sync(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=amp):
        losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    sync(device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss) and model not in NON_FINITE:  # timed on inf / NaN arithmetic: say so
        NON_FINITE.append(model)
        print(f"NON-FINITE training loss ({type(model).__name__}): timings of this model are not meaningful")
    return seconds


NON_FINITE: list[torch.nn.Module] = []


def sgd(model: torch.nn.Module, ours: bool, device) -> torch.optim.Optimizer:
    """Each side's default SGD: torch's (foreach on GPU) for torchvision, our trainer's (fused,
    momentum buffers zeroed up front: engine/optimizer.py) for ours."""
    if ours:
        return build_optimizer([model], TrainConfig(), 1e-4, torch.device(device))
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9,
                           weight_decay=1e-4)


@torch.inference_mode()
def time_inference(model, images, device, amp):
    sync(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=amp):
        model(images)
    sync(device)
    return time.perf_counter() - start


def peak_memory(fn, device):
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device) / 2**30


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=sorted(CONFIGS), default="faster", help="the family to compare")
    ap.add_argument("--amp", action="store_true", help="mixed precision (fp16 autocast on GPU)")
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1216)
    ap.add_argument("--batch", type=int, default=2, help="training batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile our backbone (train.compile_backbone)")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="add rows for ours with train.cuda_graphs, with and without its heads' graphs "
                         "(train.cuda_graph_heads; GPU; training only)")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = (args.height, args.width)
    images, targets = make_inputs(args.batch, args.height, args.width, device, masks=args.model == "mask")
    models = matched_pair(args.model, size, device, images)
    if args.compile:
        models["ours"].backbone.compile(dynamic=True)
    if args.cuda_graphs:  # the same weights again, captured in training: all parts, and all but the heads
        for name, heads in (("ours_graphs", True), ("ours_graphs_eager_heads", False)):
            models[name] = copy.deepcopy(models["ours"])
            enable_cuda_graphs(models[name], 4, device, heads=heads)
    fp16 = args.amp and device.type == "cuda"  # fp16 autocast needs loss scaling; bf16 (CPU) does not
    optimizers = {k: sgd(m, ours=k.startswith("ours"), device=device) for k, m in models.items()}
    scalers = {k: torch.amp.GradScaler("cuda") if fp16 else None for k in models}

    results = {}
    failed = {}  # graphed variants that raised, and why
    for phase in ("train", "inference"):
        names = [k for k in models if phase == "train" or not k.startswith("ours_graphs")]  # graphs: training only
        times = {k: [] for k in names}
        for name in names:
            if name.startswith("ours"):  # training steps as the trainer runs them: its targets checked on
                models[name].check_input_values = phase == "inference"  # the CPU, the model's value checks off
        for i in range(args.warmup + args.repeats):
            for name in list(names):  # interleaved
                model = models[name]
                if phase == "train":
                    model.train()
                    try:
                        t = time_train_step(model, optimizers[name], images, targets, device, args.amp, scalers[name])
                    except Exception as error:  # a graphed variant that fails must not cost the other rows
                        if not name.startswith("ours_graphs"):
                            raise
                        traceback.print_exc()
                        failed[name] = f"{type(error).__name__}: {error}"
                        names.remove(name)
                        del times[name], models[name]
                        continue
                else:
                    model.eval()
                    t = time_inference(model, images[:1], device, args.amp)
                if i >= args.warmup:
                    times[name].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        batch = args.batch if phase == "train" else 1
        results[phase] = {k: {"seconds": med[k], "images_per_s": batch / med[k]} for k in names}
        results[phase]["ratio_ours_over_torchvision"] = med["ours"] / med["torchvision"]
        for name in names:
            if name.startswith("ours_graphs"):
                results[phase][f"ratio_{name}_over_torchvision"] = med[name] / med["torchvision"]

    if device.type == "cuda":
        for name, model in models.items():
            model.train()
            results["train"][name]["peak_memory_gib"] = peak_memory(
                lambda model=model, name=name: time_train_step(model, optimizers[name], images, targets, device,
                                                               args.amp, scalers[name]),
                device)
        results["device_name"] = torch.cuda.get_device_name(device)
    else:
        results["device_name"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    results["settings"] = vars(args) | {"torch": torch.__version__}
    results["failed"] = failed

    print(f"{args.model}: device {results['device_name']}  input {args.height}x{args.width}  amp={args.amp}")
    for phase in ("train", "inference"):
        r = results[phase]
        extra = ""
        if "peak_memory_gib" in r["ours"]:
            extra = (f"  peak mem ours {r['ours']['peak_memory_gib']:.2f} GiB, "
                     f"torchvision {r['torchvision']['peak_memory_gib']:.2f} GiB")
        print(f"{phase:9s} ours {r['ours']['seconds']:.3f}s ({r['ours']['images_per_s']:.1f} img/s)  "
              f"torchvision {r['torchvision']['seconds']:.3f}s ({r['torchvision']['images_per_s']:.1f} img/s)  "
              f"ratio {r['ratio_ours_over_torchvision']:.3f}{extra}")
        for name, label in (("ours_graphs", "ours with train.cuda_graphs"),
                            ("ours_graphs_eager_heads", "ours with train.cuda_graphs, R-CNN stage eager")):
            if name in r:
                g = r[name]
                mem = f"  peak mem {g['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in g else ""
                print(f"{phase:9s} {label} {g['seconds']:.3f}s ({g['images_per_s']:.1f} img/s)  "
                      f"ratio {r[f'ratio_{name}_over_torchvision']:.3f}{mem}")
    for name, why in failed.items():
        print(f"FAILED    {name}: {why}")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
