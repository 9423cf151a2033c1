"""`simpledet eval CONFIG --weights CKPT [--out DIR] [--metric voc|voc07] [--plots]`: COCO stats on
the config's val split; VOC's mAP@0.5 beside them, and pictures of what the model gets wrong."""

import json
from pathlib import Path

from simpledet.cli.checkpoint_info import checkpoint_categories


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="COCO box AP on the config's data.val split")
    e.add_argument("config")
    e.add_argument("--weights", required=True)
    e.add_argument("--out", help="output folder (default: WEIGHTS_DIR/eval)")
    e.add_argument("--metric", choices=("coco", "voc", "voc07"), default="coco",
                   help="voc: add VOC's mAP@0.5 (all points, VOC2010+); voc07: with VOC2007's 11 points")
    e.add_argument("--plots", action="store_true",
                   help="also write pr_curves.png, confusion_matrix.png/.json and worst_images/ (needs matplotlib)")
    e.add_argument("overrides", nargs="*", metavar="key.sub=value")
    e.set_defaults(func=run)



def run(args) -> None:
    import torch

    from simpledet.api import build_model
    from simpledet.config import load_config
    from simpledet.data.datasets import open_dataset
    from simpledet.engine import distributed
    from simpledet.engine.checkpoint import load_weights
    from simpledet.engine.evaluator import format_results, write_metrics
    from simpledet.engine.labels import check_num_classes
    from simpledet.engine.mask_outputs import evaluate_masks
    from simpledet.engine.validation import evaluate_model
    from simpledet.files import atomic_write_text

    if args.plots:  # refused before the model runs, not after
        from simpledet.analysis.figures import require_matplotlib
        require_matplotlib()
    cfg = load_config(args.config, args.overrides)
    weights = Path(args.weights)
    out = Path(args.out) if args.out else weights.parent / "eval"
    dataset = open_dataset(cfg.data.val, train=False, key="data.val")
    check_num_classes(cfg, dataset)
    device = distributed.init_from_env(cfg.train.device)  # under torchrun: images sharded by rank
    try:
        model = build_model(cfg, load_pretrained=False)  # every weight comes from the checkpoint
        load_weights(model, weights)
        model.to(device)
        if cfg.test.channels_last:
            model.to(memory_format=torch.channels_last)
        categories = checkpoint_categories(weights)  # the names of the model's labels, when recorded
        result = evaluate_model(model, cfg, dataset, device, model_categories=categories and categories[0])
    finally:
        distributed.destroy()
    if result is None:  # not rank 0: its detections went to rank 0, which evaluates and writes
        return
    records = result.detections
    if cfg.model.proposals_only:  # SimpleDet's rpn_test.py: the proposals, and their recall
        from simpledet.engine.proposal_recall import format_recall
        atomic_write_text(out / "proposals.json", json.dumps(records))
        print(format_recall(result))
        write_metrics(out / "metrics.json", result)
        print(f"wrote {out / 'metrics.json'} and {out / 'proposals.json'}")
        return
    atomic_write_text(out / "detections.json", json.dumps(records))
    if cfg.model.crowdhuman_metrics:  # CrowdHuman: AP and MR^-2 with ignore regions
        from simpledet.engine.crowdhuman_metrics import format_crowdhuman
        print(format_crowdhuman(result))
        write_metrics(out / "metrics.json", result)
        print(f"wrote {out / 'metrics.json'} and {out / 'detections.json'}")
        return
    print(format_results(result))
    write_metrics(out / "metrics.json", result, _voc_section(args, dataset, records))
    print(f"wrote {out / 'metrics.json'} and {out / 'detections.json'}")
    if args.plots:
        _write_plots(out, dataset, records, result)
    if cfg.model.predicts_masks:  # mask AP beside box AP
        segm = evaluate_masks(dataset.ground_truth, records, source=dataset.ann_file)
        print("\nMask AP (segm):\n" + format_results(segm))
        write_metrics(out / "metrics_segm.json", segm)
        print(f"wrote {out / 'metrics_segm.json'}")


def _voc_section(args, dataset, records: list[dict]) -> dict:
    """{"voc": ...} for metrics.json when --metric asks for VOC's mAP (printed too), else {}."""
    if args.metric == "coco":
        return {}
    from simpledet.analysis.voc_map import format_voc, voc_map

    voc = voc_map(dataset.ground_truth, records, eleven_point=args.metric == "voc07")
    print("\n" + format_voc(voc))
    return {"voc": voc.to_json()}


def _write_plots(out: Path, dataset, records: list[dict], result) -> None:
    from simpledet.analysis.eval_plots import write_eval_plots

    index_of = {dataset.image_info(i)["image_id"]: i for i in range(len(dataset))}
    written = write_eval_plots(out, dataset.ground_truth, records, result,
                               load_image=lambda image_id: dataset[index_of[image_id]][0])
    print(f"wrote {len(written)} plot files under {out}: pr_curves.png, confusion_matrix.png/.json, worst_images/")
