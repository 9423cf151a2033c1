"""`simpledet predict [CONFIG] --weights CKPT INPUT...`: detections as COCO results, and pictures.

An INPUT is an image file, a folder (its image files, sorted) or a glob pattern (its matches,
sorted; `**` reaches into subfolders). Images go to the model `--batch-size` at a time."""

import json
import sys
from collections.abc import Callable
from pathlib import Path

from simpledet.cli.checkpoint_info import checkpoint_categories, config_of_checkpoint
from simpledet.errors import UserError


def add_parser(sub) -> None:
    r = sub.add_parser("predict", help="detect objects in images")
    r.add_argument("config")
    r.add_argument("--weights", help="the checkpoint (--backend eager)")
    r.add_argument("--backend", choices=("eager", "onnxruntime"), default="eager",
                   help="eager: the PyTorch model of CONFIG and --weights; onnxruntime: an exported --model")
    r.add_argument("--model", help="a detector from `simpledet export --format onnx` (--backend onnxruntime); it "
                                   "holds its categories and score threshold")
    r.add_argument("images", nargs="*", metavar="INPUT",
                   help="image files, folders or glob patterns (quoted, e.g. 'photos/*.jpg'); CONFIG may be "
                        "left out for our checkpoints, which record their config")
    r.add_argument("--out", default="preds.json", help="COCO-results JSON (default preds.json)")
    r.add_argument("--vis", help="folder for pictures with the detections drawn")
    r.add_argument("--batch-size", type=int, default=4, dest="batch_size",
                   help="images per call of the model (default 4)")
    r.add_argument("--score-thresh", type=float, dest="score_thresh")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    r.set_defaults(func=run)


def _image_suffixes() -> set[str]:
    """File extensions of the formats Pillow can read."""
    from PIL import Image

    return {ext for ext, image_format in Image.registered_extensions().items() if image_format in Image.OPEN}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """The image paths that INPUTs name: a file as given, a folder's image files sorted, a glob
    pattern's matching files sorted. A folder or pattern that yields nothing is a UserError naming
    it; a missing plain file is left in, to be reported when read while the others go on."""
    import glob

    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            suffixes = _image_suffixes()
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise UserError(f"{item}: no image files in this folder")
        elif path.is_file() or not any(c in item for c in "*?["):
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise UserError(f"{item}: no file matches this pattern")
        paths += found
    return paths


def torch_detector(cfg, weights: Path, names: list[str] | None,
                   label_to_cat: dict[int, int] | None) -> Callable[[list], list[dict]]:
    """detect_batch(images) -> one dict per image (boxes x1y1x2y2, labels, scores[, masks, names]),
    on CPU tensors, for float CHW images in [0, 1]."""
    from simpledet.api import Predictor

    predictor = Predictor(cfg, weights, device=cfg.train.device, category_names=names,
                          label_to_category_id=label_to_cat)
    return lambda images: predictor(list(images), batch_size=len(images))


def onnx_detector(model: str | None, score_thresh: float | None) -> tuple[Callable[[list], list[dict]], dict[int, int]]:
    """detect_batch for an exported ONNX file, which applies its own score threshold (a higher
    --score-thresh drops the detections below it), and the ids to write: its labels are category
    ids already."""
    from simpledet.deploy.onnx_runtime import OnnxDetector

    if not model:
        raise UserError("--backend onnxruntime needs --model FILE.onnx")
    detector = OnnxDetector(model)
    if detector.category_ids is None:
        raise UserError(f"{model}: records no category ids; export it with `simpledet export`")

    def detect(image) -> dict:
        det = detector(image)
        if score_thresh is None:
            return det
        keep = (det["scores"] >= score_thresh).nonzero().flatten().tolist()
        return {k: v[keep] if hasattr(v, "shape") else [v[i] for i in keep] for k, v in det.items()}

    return (lambda images: [detect(image) for image in images]), {cat: cat for cat in detector.category_ids}


def run(args) -> None:
    import torch
    from tqdm import tqdm

    from simpledet.config import load_config
    from simpledet.data.image_io import read_image
    from simpledet.engine.evaluator import detections_to_coco
    from simpledet.engine.mask_outputs import masks_for_drawing
    from simpledet.files import atomic_write_text
    from simpledet.visualize import draw_detections, save_image

    weights = Path(args.weights) if args.weights else None
    if args.backend == "onnxruntime":  # the exported file is the whole model: no CONFIG
        if Path(args.config).suffix in (".py", ".json"):
            raise UserError(f"--backend onnxruntime takes no CONFIG ({args.config}): --model holds the model")
        args.images = [args.config] + list(args.images)
    elif args.model or weights is None:
        raise UserError("--backend eager runs CONFIG with --weights; --model is for --backend onnxruntime")
    elif Path(args.config).suffix in (".py", ".json"):
        cfg = load_config(args.config, args.overrides)
    else:  # no config given: the first argument is an image; the checkpoint says its config
        args.images = [args.config] + list(args.images)
        cfg = config_of_checkpoint(weights, args.overrides)
    if not args.images:
        raise UserError("predict needs at least one image")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    paths = expand_inputs(args.images)
    if args.backend == "onnxruntime":
        detect_batch, written_ids = onnx_detector(args.model, args.score_thresh)
    else:
        if args.score_thresh is not None:
            cfg.model.final_head.score_thresh = args.score_thresh
        categories = checkpoint_categories(weights)
        names, label_to_cat = None, None
        if categories is not None and cfg.data.contiguous_labels:
            names = categories[0]
            label_to_cat = {i + 1: cat for i, cat in enumerate(categories[1])}
        detect_batch = torch_detector(cfg, weights, names, label_to_cat)
        # without the checkpoint's categories, labels are written as they are
        written_ids = label_to_cat or {label: label for label in range(cfg.model.num_classes + 1)}
    records = []
    # the bar shows on a terminal only (disable=None), so that logs and pipes stay clean
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=None, mininterval=1.0)
    for start in range(0, len(paths), args.batch_size):
        batch = []
        for path in paths[start:start + args.batch_size]:
            try:
                batch.append((path, read_image(path)))
            except UserError as e:  # report and go on with the other images
                bar.write(f"warning: {e}", file=sys.stderr)
        detections = detect_batch([image for _, image in batch]) if batch else []
        for (path, image), det in zip(batch, detections):
            records += detections_to_coco([det], [{"file_name": str(path)}], written_ids,
                                          box_decimals=3, score_decimals=5)
            if args.vis:
                labels = det.get("names", [str(lab) for lab in det["labels"].tolist()])
                # small images are enlarged so that the labels stay readable
                zoom = max(1, 512 // max(image.shape[-2:]))
                if zoom > 1:
                    image = torch.nn.functional.interpolate(image[None], scale_factor=zoom, mode="nearest")[0]
                drawn = draw_detections(image, det["boxes"] * zoom, labels, det["scores"],
                                        masks=masks_for_drawing(det, zoom))
                save_image(Path(args.vis) / (Path(path).stem + ".png"), drawn)
        bar.update(min(args.batch_size, len(paths) - start))
    bar.close()
    atomic_write_text(args.out, json.dumps(records, indent=1))
    print(f"{len(records)} detections on {len(paths)} image(s) -> {args.out}"
          + (f"; pictures in {args.vis}" if args.vis else ""))
