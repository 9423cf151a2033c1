"""`simpledet plot RUN_DIR`: a training run's losses, learning rate and evaluation stats as PNGs."""

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="draw a run's metrics.jsonl: losses, learning rate, evaluation stats")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `simpledet train` output folder (holds metrics.jsonl)")
    p.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.set_defaults(func=run)


def run(args) -> None:
    from simpledet.analysis.figures import require_matplotlib
    from simpledet.analysis.training_curves import plot_training_curves, read_metrics_log

    require_matplotlib()
    run_dir = Path(args.run_dir)
    history = read_metrics_log(run_dir / "metrics.jsonl")
    written = plot_training_curves(history, Path(args.out) if args.out else run_dir / "plots")
    for path in written:
        print(f"wrote {path}")
    if not history.evaluations:
        print("no evaluation records (train with train.eval_every to have them)")
