"""`simpledet predict [CONFIG] --weights CKPT IMAGE...`: detections as COCO results, and pictures."""

import json
import sys
from pathlib import Path

from simpledet.cli.checkpoint_info import checkpoint_categories, config_of_checkpoint
from simpledet.errors import UserError


def add_parser(sub) -> None:
    r = sub.add_parser("predict", help="detect objects in images")
    r.add_argument("config")
    r.add_argument("--weights", required=True)
    r.add_argument("images", nargs="*", metavar="IMAGE",
                   help="images; CONFIG may be left out for our checkpoints, which record their config")
    r.add_argument("--out", default="preds.json", help="COCO-results JSON (default preds.json)")
    r.add_argument("--vis", help="folder for pictures with the detections drawn")
    r.add_argument("--score-thresh", type=float, dest="score_thresh")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    r.set_defaults(func=run)



def run(args) -> None:
    import torch

    from simpledet.api import Predictor
    from simpledet.config import load_config
    from simpledet.data.image_io import read_image
    from simpledet.engine.evaluator import detections_to_coco
    from simpledet.engine.mask_outputs import masks_for_drawing
    from simpledet.files import atomic_write_text
    from simpledet.visualize import draw_detections, save_image

    weights = Path(args.weights)
    if Path(args.config).suffix in (".py", ".json"):
        cfg = load_config(args.config, args.overrides)
    else:  # no config given: the first argument is an image; the checkpoint says its config
        args.images = [args.config] + list(args.images)
        cfg = config_of_checkpoint(weights, args.overrides)
    if not args.images:
        raise UserError("predict needs at least one image")
    if args.score_thresh is not None:
        cfg.model.final_head.score_thresh = args.score_thresh
    categories = checkpoint_categories(weights)
    names, label_to_cat = None, None
    if categories is not None and cfg.data.contiguous_labels:
        names = categories[0]
        label_to_cat = {i + 1: cat for i, cat in enumerate(categories[1])}
    predictor = Predictor(cfg, weights, device=cfg.train.device, category_names=names,
                          label_to_category_id=label_to_cat)
    # without the checkpoint's categories, labels are written as they are
    written_ids = label_to_cat or {label: label for label in range(cfg.model.num_classes + 1)}
    records = []
    for path in args.images:
        try:
            image = read_image(path)
        except UserError as e:  # report and go on with the other images
            print(f"warning: {e}", file=sys.stderr)
            continue
        det = predictor(image)
        records += detections_to_coco([det], [{"file_name": str(path)}], written_ids, box_decimals=3, score_decimals=5)
        if args.vis:
            labels = det.get("names", [str(lab) for lab in det["labels"].tolist()])
            # small images are enlarged so that the labels stay readable
            zoom = max(1, 512 // max(image.shape[-2:]))
            if zoom > 1:
                image = torch.nn.functional.interpolate(image[None], scale_factor=zoom, mode="nearest")[0]
            drawn = draw_detections(image, det["boxes"] * zoom, labels, det["scores"],
                                    masks=masks_for_drawing(det, zoom))
            save_image(Path(args.vis) / (Path(path).stem + ".png"), drawn)
    atomic_write_text(args.out, json.dumps(records, indent=1))
    print(f"{len(records)} detections on {len(args.images)} image(s) -> {args.out}"
          + (f"; pictures in {args.vis}" if args.vis else ""))
