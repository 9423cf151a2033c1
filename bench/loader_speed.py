"""Is data loading ever the bottleneck? The training loader alone against the training step.

Writes a synthetic COCO-like set (JPEG photos of COCO's typical 640x480 size, a few boxes each)
to a temporary folder, then measures on this machine:
  loader   images/s the training loader delivers (decode, flip, collate), for each worker count;
  model    images/s of a full training step (forward, backward, SGD) of a zoo config on the same
           images, batch 2 per step, resized by the model to its training scale.
The loader must deliver at least 3x the model's images/s (--min-ratio) with the workers a
config would use; the script exits 1 otherwise.

    python bench/loader_speed.py                            # Faster R50v1b-FPN, 800x1333
    python bench/loader_speed.py --device cuda              # against the GPU's training speed
    python bench/loader_speed.py --small                    # a quick end-to-end run
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simpledet import build_model, load_config
from simpledet.data.coco import CocoDetection
from simpledet.data.loader import build_train_loader

REPO = Path(__file__).resolve().parents[1]


def write_dataset(root: Path, num_images: int, seed: int = 0) -> Path:
    """Photo-like JPEGs (smooth noise, so JPEG sizes are realistic) and COCO annotations."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    base = rng.uniform(0, 255, (60, 80, 3))
    for i in range(1, num_images + 1):
        w, h = (640, 480) if i % 3 else (480, 640)  # both orientations: aspect grouping at work
        small = np.clip(np.roll(base, i, axis=0) + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        noise = rng.normal(0, 8, (h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
        img.save(root / "images" / f"{i:06d}.jpg", quality=90)
        images.append({"id": i, "file_name": f"{i:06d}.jpg", "width": w, "height": h})
        for _ in range(7):  # COCO's average number of objects per image
            x, y = rng.uniform(0, w - 60), rng.uniform(0, h - 60)
            bw, bh = rng.uniform(10, w - x), rng.uniform(10, h - y)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(rng.integers(1, 81)),
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, 81)]
    ann = root / "annotations.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann


def loader_images_per_s(dataset: CocoDetection, batch: int, workers: int, batches: int) -> float:
    loader = iter(build_train_loader(dataset, batch, workers, seed=0))
    next(loader)  # worker start-up is paid once per run, not per image
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start)


def model_images_per_s(config: str, dataset: CocoDetection, device: torch.device, steps: int,
                       warmup: int, overrides: list[str]) -> float:
    cfg = load_config(REPO / "configs" / config, overrides)
    model = build_model(cfg, load_pretrained=False).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    loader = iter(build_train_loader(dataset, 2, 0, seed=0))
    labels = torch.arange(81)  # category ids 1..80 are already contiguous model labels 1..80
    elapsed, images_done = 0.0, 0
    for i in range(warmup + steps):
        images, targets = next(loader)  # loaded outside the timed region: the model alone
        images = [img.to(device) for img in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": labels[t["labels"]].to(device)} for t in targets]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            elapsed += time.perf_counter() - start
            images_done += len(images)
    return images_done / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="resnet_v1b/faster_r50v1b_fpn_1x.py", help="under configs/")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--min-ratio", type=float, default=3.0)
    ap.add_argument("--small", action="store_true", help="tiny sizes: an end-to-end check, not a measurement")
    ap.add_argument("--json")
    args = ap.parse_args()
    overrides = []
    if args.small:
        args.images, args.steps, args.workers = 16, 1, [0]
        overrides = ["model.input.min_size=(160,)", "model.input.max_size=224", "model.rpn.pre_nms_top_n_train=200",
                     "model.rpn.post_nms_top_n_train=100"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ann = write_dataset(Path(tmp), args.images)
        dataset = CocoDetection(ann, Path(tmp) / "images", train=True)
        per_worker = {w: loader_images_per_s(dataset, 2, w, batches=(args.images // 2) - 2) for w in args.workers}
        model = model_images_per_s(args.config, dataset, device, args.steps, 1, overrides)
    best = max(per_worker.values())
    ratio = best / model
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"{args.config} on {where}: training step {model:.2f} img/s")
    for w, v in per_worker.items():
        print(f"loader, {w} worker(s): {v:.1f} img/s ({v / model:.1f}x the model)")
    print(f"loader / model: {ratio:.1f}x (target >= {args.min_ratio}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model_img_s": model, "loader_img_s": per_worker, "ratio": ratio,
                                               "device": where, "settings": vars(args)}, indent=2))
    if ratio < args.min_ratio and not args.small:
        sys.exit(1)


if __name__ == "__main__":
    main()
