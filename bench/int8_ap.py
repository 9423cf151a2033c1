"""What INT8 quantisation-aware training costs in accuracy, on the shapes set, as SimpleDet's
config/int8 README reports it (the float model's AP beside the quantised one's).

1. the quick-start Faster R-CNN C4 (configs/quickstart/faster_r18c4_shapes.py) trained in float;
2. its INT8 copy (faster_r18c4_int8_shapes.py: fake-quantised weights and activations of every
   conv and fully connected layer) fine-tuned from it (`train.init_from`), quantised from the first
   step;
3. the float model fine-tuned the same way without quantisation: what the extra iterations alone do;
4. AP on the validation set of: the float model, the QAT model as PyTorch runs it (fake-quantised),
   the QAT model exported to ONNX (QuantizeLinear / DequantizeLinear with its thresholds) run by
   ONNX Runtime through `simpledet predict --backend onnxruntime` and scored by `simpledet score`,
   and the float model fine-tuned.
A run whose model_final is already in --out is not trained again.

    python bench/int8_ap.py --out runs/int8_ap            # the whole schedule (about 10 min, 2 cores)
    python bench/int8_ap.py --out runs/int8_ap --small    # a quick end-to-end run, not a measurement
"""

import argparse
import json
from pathlib import Path

from simpledet.cli import main as cli
from simpledet.data.shapes import generate_shapes
from simpledet.files import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
FLOAT_CONFIG = REPO / "configs/quickstart/faster_r18c4_shapes.py"
QAT_CONFIG = REPO / "configs/quickstart/faster_r18c4_int8_shapes.py"


def train(config: Path, out: Path, *overrides: str) -> None:
    if not (out / "model_final.safetensors").is_file():
        run("train", config, "--out", out, *overrides)


def run(*args: str) -> None:
    code = cli([str(a) for a in args])
    if code:
        raise SystemExit(f"simpledet {' '.join(map(str, args))}: exit {code}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/int8_ap")
    ap.add_argument("--float-iters", type=int, default=900, help="the float training (the quick start's 900)")
    ap.add_argument("--qat-iters", type=int, default=300, help="the QAT fine-tuning")
    ap.add_argument("--small", action="store_true", help="tiny schedule and set: an end-to-end check")
    args = ap.parse_args()
    out = Path(args.out)
    if args.small:
        args.float_iters, args.qat_iters = 20, 10
    shapes = out / "shapes"
    if not (shapes / "annotations" / "val.json").is_file():
        generate_shapes(shapes, **({"num_train": 16, "num_val": 4} if args.small else {}))
    data = [f"data.train.ann_file={shapes / 'annotations/train.json'}", f"data.train.image_dir={shapes / 'train'}",
            f"data.val.ann_file={shapes / 'annotations/val.json'}", f"data.val.image_dir={shapes / 'val'}"]

    float_run, qat_run, tuned_run = out / "float", out / "qat", out / "float_tuned"
    iters = args.float_iters
    train(FLOAT_CONFIG, float_run, *data, f"train.max_iter={iters}",
          f"train.steps=({iters * 13 // 18},{iters * 41 // 45})", f"train.checkpoint_every={iters}",
          f"train.warmup_iters={min(100, iters // 4)}")
    # fine-tuning: the float run's last lr (0.04 after two x0.1 steps), quantised from step 0
    tuning = [*data, f"train.max_iter={args.qat_iters}", "train.lr=0.0004", "train.warmup_iters=0", "train.steps=()",
              f"train.checkpoint_every={args.qat_iters}", f"train.init_from={float_run / 'model_final.safetensors'}"]
    train(QAT_CONFIG, qat_run, *tuning, "qat.delay=0")
    train(FLOAT_CONFIG, tuned_run, *tuning)

    results = {}
    for name, config, run_dir in (("float", FLOAT_CONFIG, float_run),
                                  ("int8 (fake-quantised, PyTorch)", QAT_CONFIG, qat_run),
                                  ("float, fine-tuned as the QAT run", FLOAT_CONFIG, tuned_run)):
        run("eval", config, "--weights", run_dir / "model_final.safetensors", "--out", run_dir / "eval", *data)
        results[name] = json.loads((run_dir / "eval" / "metrics.json").read_text())
    onnx_file = qat_run / "model.onnx"
    run("export", "--weights", qat_run / "model_final.safetensors", "--format", "onnx", "--out", onnx_file)
    predictions = qat_run / "onnx_predictions.json"
    run("predict", "--backend", "onnxruntime", "--model", onnx_file, shapes / "val", "--out", predictions)
    # predict names each image by its file; COCO's scoring wants the image ids of val.json
    ids = {im["file_name"]: im["id"] for im in json.loads((shapes / "annotations/val.json").read_text())["images"]}
    records = [{**{k: v for k, v in r.items() if k != "file_name"}, "image_id": ids[Path(r["file_name"]).name]}
               for r in json.loads(predictions.read_text())]
    atomic_write_text(predictions, json.dumps(records))
    run("score", shapes / "annotations/val.json", predictions, "--out", qat_run / "onnx_metrics.json")
    results["int8 (ONNX Runtime, Q/DQ graph)"] = json.loads((qat_run / "onnx_metrics.json").read_text())

    print(f"\nshapes val ({'small check' if args.small else 'measurement'}): float {args.float_iters} iterations, "
          f"QAT fine-tuning {args.qat_iters}")
    print(f"{'model':34s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s}")
    for name, m in results.items():
        print(f"{name:34s} {m['AP']:6.3f} {m['AP50']:6.3f} {m['AP75']:6.3f}")
    atomic_write_text(out / "int8_ap.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
