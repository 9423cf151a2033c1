"""`simpledet eval CONFIG --weights CKPT [--out DIR]`: COCO stats on the config's val split."""

import json
from pathlib import Path


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="COCO box AP on the config's data.val split")
    e.add_argument("config")
    e.add_argument("--weights", required=True)
    e.add_argument("--out", help="output folder (default: WEIGHTS_DIR/eval)")
    e.add_argument("overrides", nargs="*", metavar="key.sub=value")
    e.set_defaults(func=run)



def run(args) -> None:
    import torch

    from simpledet.api import build_model
    from simpledet.config import load_config
    from simpledet.data.datasets import open_dataset
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
    dataset = open_dataset(cfg.data.val, train=False, key="data.val")
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
    result = evaluate_detections(dataset.ground_truth, records, source=dataset.ann_file)
    print(format_results(result))
    write_metrics(out / "metrics.json", result)
    print(f"wrote {out / 'metrics.json'} and {out / 'detections.json'}")
    if cfg.model.predicts_masks:  # mask AP beside box AP
        segm = evaluate_masks(dataset.ground_truth, records, source=dataset.ann_file)
        print("\nMask AP (segm):\n" + format_results(segm))
        write_metrics(out / "metrics_segm.json", segm)
        print(f"wrote {out / 'metrics_segm.json'}")
