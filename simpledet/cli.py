"""The `simpledet` command: train, eval, predict, convert, data.

User mistakes (bad config, data or weights) print one message naming the culprit and exit with
code 2; no traceback.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from simpledet.errors import UserError

if TYPE_CHECKING:
    from simpledet.config import Config


def _train(args) -> None:
    from simpledet.config import load_config
    from simpledet.engine import distributed
    from simpledet.engine.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    distributed.init_from_env(cfg.train.device)  # under torchrun: join the process group
    resume = args.resume
    if distributed.restart_count() > 0:  # torchrun restarted the group after a worker died
        logging.getLogger("simpledet").info("torchrun restart %d: resuming from the newest checkpoint in %s",
                                            distributed.restart_count(), out)
        resume = True
    try:
        final = Trainer(cfg, out, resume=resume).train()
        if distributed.is_main_process():
            print(f"weights: {final}")
    finally:
        distributed.destroy()


def _checkpoint_categories(weights: Path) -> tuple[list[str], list[int]] | None:
    meta = weights.with_suffix(".json")
    if weights.suffix == ".safetensors" and meta.is_file():
        data = json.loads(meta.read_text())
        if "categories" in data and "category_ids" in data:
            return data["categories"], data["category_ids"]
    return None


def _eval(args) -> None:
    import torch

    from simpledet.api import build_model
    from simpledet.config import load_config
    from simpledet.data.coco import CocoDetection
    from simpledet.engine import distributed
    from simpledet.engine.checkpoint import load_weights
    from simpledet.engine.evaluator import evaluate_detections, format_results, write_metrics
    from simpledet.engine.inference import run_on_dataset
    from simpledet.engine.labels import check_num_classes, model_label_to_category_id
    from simpledet.engine.mask_outputs import evaluate_masks
    from simpledet.engine.tta import inference_fn
    from simpledet.files import atomic_write_text

    cfg = load_config(args.config, args.overrides)
    weights = Path(args.weights)
    out = Path(args.out) if args.out else weights.parent / "eval"
    dataset = CocoDetection(cfg.data.val.ann_file, cfg.data.val.image_dir, train=False)
    check_num_classes(cfg, dataset)
    device = distributed.init_from_env(cfg.train.device)  # under torchrun: images sharded by rank
    try:
        model = build_model(cfg, load_pretrained=False)  # every weight comes from the checkpoint
        load_weights(model, weights)
        model.to(device)
        if cfg.test.channels_last:
            model.to(memory_format=torch.channels_last)
        records = run_on_dataset(model, dataset, model_label_to_category_id(cfg, dataset), device,
                                 cfg.data.eval_batch_size, cfg.data.num_workers, detect=inference_fn(model, cfg))
    finally:
        distributed.destroy()
    if records is None:  # not rank 0: its detections went to rank 0, which evaluates and writes
        return
    atomic_write_text(out / "detections.json", json.dumps(records))
    result = evaluate_detections(cfg.data.val.ann_file, records)
    print(format_results(result))
    write_metrics(out / "metrics.json", result)
    print(f"wrote {out / 'metrics.json'} and {out / 'detections.json'}")
    if cfg.model.predicts_masks:  # mask AP beside box AP
        segm = evaluate_masks(cfg.data.val.ann_file, records)
        print("\nMask AP (segm):\n" + format_results(segm))
        write_metrics(out / "metrics_segm.json", segm)
        print(f"wrote {out / 'metrics_segm.json'}")


def _config_of_checkpoint(weights: Path, overrides) -> "Config":
    """The config a checkpoint of ours was trained with (saved in the JSON beside it)."""
    from simpledet.config import apply_override, from_dict

    meta = weights.with_suffix(".json")
    if not meta.is_file():
        raise UserError(f"no config given and {meta} (the checkpoint's config) does not exist: name a CONFIG")
    try:
        cfg = from_dict(json.loads(meta.read_text())["config"])
    except (ValueError, KeyError, TypeError, ImportError, AttributeError) as e:
        raise UserError(f"{meta}: holds no usable config ({type(e).__name__}: {e})") from None
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def _predict(args) -> None:
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
        cfg = _config_of_checkpoint(weights, args.overrides)
    if not args.images:
        raise UserError("predict needs at least one image")
    if args.score_thresh is not None:
        cfg.model.final_head.score_thresh = args.score_thresh
    categories = _checkpoint_categories(weights)
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


def _convert(args) -> None:
    from safetensors.torch import save

    from simpledet.engine.checkpoint import read_state_dict
    from simpledet.files import atomic_write_bytes, atomic_write_text
    from simpledet.weights.torchvision import convert_torchvision, is_torchvision_detection

    state = read_state_dict(args.src)
    if not is_torchvision_detection(state):
        raise UserError(f"{args.src}: not a torchvision detection checkpoint (no backbone.body.* parameters)")
    converted, skipped = convert_torchvision(state)
    dst = Path(args.dst)
    atomic_write_bytes(dst, save({k: v.contiguous() for k, v in converted.items()}))
    meta = {"source": str(args.src), "converted_from": "torchvision"}
    atomic_write_text(dst.with_suffix(".json"), json.dumps(meta) + "\n")
    print(f"converted {len(converted)} arrays ({len(skipped)} skipped: BatchNorm counters) -> {dst}")


def _score(args) -> None:
    from simpledet.engine.evaluator import evaluate_detections, format_results, write_metrics

    path = Path(args.detections)
    if not path.is_file():
        raise UserError(f"detections file not found: {path}")
    try:
        detections = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(detections, list):
        raise UserError(f"{path}: expected a list of COCO result records")
    needed = ("image_id", "category_id", "score", "bbox" if args.iou_type == "bbox" else "segmentation")
    for i, record in enumerate(detections):
        if not isinstance(record, dict) or any(key not in record for key in needed):
            raise UserError(f"{path}: record #{i} is not a COCO {args.iou_type} result: it needs the keys "
                            f"{', '.join(needed)}; got {str(record)[:120]}")
    result = evaluate_detections(args.gt, detections, iou_type=args.iou_type)
    print(format_results(result))
    if args.out:
        write_metrics(args.out, result)
        print(f"wrote {args.out}")


def _convert_simpledet(args) -> None:
    from simpledet.weights.simpledet_checkpoint import convert_simpledet_checkpoint

    print(convert_simpledet_checkpoint(args.src, args.config, args.dst, args.overrides))


def _inspect(args) -> None:
    from simpledet.weights.inspect import run_inspect

    print(run_inspect(args.file))


def _convert_mxnet(args) -> None:
    from simpledet.weights.mxnet_backbone import convert_mxnet_backbone

    print(convert_mxnet_backbone(args.src, args.dst))


def _data_shapes(args) -> None:
    from simpledet.data.shapes import generate_shapes

    paths = generate_shapes(args.out_dir, num_train=args.train, num_val=args.val, seed=args.seed)
    for key, value in paths.items():
        print(f"{key}: {value}")


def _zoo(args) -> None:
    from simpledet.files import atomic_write_text
    from simpledet.zoo import collect, format_table, missing_configs

    entries = collect()
    if args.markdown:
        text = ("# Model zoo\n\nEvery config in `configs/`, with SimpleDet's published figures (COCO minival "
                "box AP, mask AP in brackets; training memory and speed are SimpleDet's own measurements on "
                "8 GPUs) beside the size of our model: parameters, and GFLOPs (multiply-add = 2) for one "
                "800x1333 image with the test-time number of RoIs. Generated by `simpledet zoo --markdown`.\n\n"
                + format_table(entries, markdown=True) + "\n")
        missing = missing_configs()
        if missing:
            text += "\nSimpleDet zoo rows without a config yet: " + ", ".join(f"`{m}`" for m in missing) + "\n"
        atomic_write_text(args.markdown, text)
        print(f"wrote {args.markdown} ({len(entries)} configs)")
    else:
        print(format_table(entries))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simpledet", description="SimpleDet's detectors on PyTorch")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a detector")
    t.add_argument("config")
    t.add_argument("--out", help="output folder (default runs/CONFIG_NAME)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("overrides", nargs="*", metavar="key.sub=value")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="COCO box AP on the config's data.val split")
    e.add_argument("config")
    e.add_argument("--weights", required=True)
    e.add_argument("--out", help="output folder (default: WEIGHTS_DIR/eval)")
    e.add_argument("overrides", nargs="*", metavar="key.sub=value")
    e.set_defaults(func=_eval)

    r = sub.add_parser("predict", help="detect objects in images")
    r.add_argument("config")
    r.add_argument("--weights", required=True)
    r.add_argument("images", nargs="*", metavar="IMAGE",
                   help="images; CONFIG may be left out for our checkpoints, which record their config")
    r.add_argument("--out", default="preds.json", help="COCO-results JSON (default preds.json)")
    r.add_argument("--vis", help="folder for pictures with the detections drawn")
    r.add_argument("--score-thresh", type=float, dest="score_thresh")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    r.set_defaults(func=_predict)

    c = sub.add_parser("convert", help="convert weights from another framework")
    csub = c.add_subparsers(dest="source", required=True)
    ct = csub.add_parser("torchvision", help="a torchvision detection state_dict")
    ct.add_argument("src")
    ct.add_argument("dst")
    ct.set_defaults(func=_convert)
    cm = csub.add_parser("mxnet", help="a SimpleDet ImageNet-pretrained backbone (.params) -> safetensors")
    cm.add_argument("src")
    cm.add_argument("dst")
    cm.set_defaults(func=_convert_mxnet)
    cs = csub.add_parser("simpledet",
                         help="a SimpleDet zoo detector checkpoint (.params) into our config of the same name")
    cs.add_argument("src")
    cs.add_argument("dst")
    cs.add_argument("--config", required=True)
    cs.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    cs.set_defaults(func=_convert_simpledet)

    i = sub.add_parser("inspect", help="list the arrays (name, dtype, shape) of a .params / .pth / .safetensors file")
    i.add_argument("file")
    i.set_defaults(func=_inspect)

    sc = sub.add_parser("score", help="COCO stats of any detector's results file against a ground truth")
    sc.add_argument("gt", metavar="GT.json")
    sc.add_argument("detections", metavar="DETECTIONS.json")
    sc.add_argument("--iou-type", dest="iou_type", choices=("bbox", "segm"), default="bbox")
    sc.add_argument("--out", help="write the 12 stats as JSON here")
    sc.set_defaults(func=_score)

    z = sub.add_parser("zoo", help="list every config with SimpleDet's figures and our model's size")
    z.add_argument("--markdown", nargs="?", const="docs/zoo.md", default=None, metavar="PATH",
                   help="write a markdown table (default path docs/zoo.md)")
    z.set_defaults(func=_zoo)

    d = sub.add_parser("data", help="datasets")
    dsub = d.add_subparsers(dest="dataset", required=True)
    ds = dsub.add_parser("shapes", help="write the synthetic shapes dataset (COCO format)")
    ds.add_argument("out_dir")
    ds.add_argument("--train", type=int, default=600)
    ds.add_argument("--val", type=int, default=100)
    ds.add_argument("--seed", type=int, default=0)
    ds.set_defaults(func=_data_shapes)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # overrides may follow options (`train CFG --out X key=v`), which argparse alone won't accept
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "command", None) == "predict":  # images after the options land in `extra`
        args.images = list(args.images) + [x for x in extra if not x.startswith("-")]
        extra = [x for x in extra if x.startswith("-")]
    unknown = [x for x in extra if "=" not in x or x.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except UserError as e:
        print(f"simpledet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
