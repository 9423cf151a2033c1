"""A run's metrics.jsonl drawn: the losses and the learning rate at each logged iteration, and the
evaluation stats of the evaluation records (`{"iteration": i, "eval": {"AP": ..., ...}}`)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from simpledet.analysis.figures import new_figure, save_png
from simpledet.engine.evaluator import STAT_NAMES
from simpledet.errors import UserError

log = logging.getLogger(__name__)

AP_NAMES = STAT_NAMES[:6]
AR_NAMES = STAT_NAMES[6:]
NOT_LOSSES = ("loss_scale",)  # fp16's loss scale is logged beside the losses but is none


@dataclass
class MetricsHistory:
    train: list[tuple[int, dict]] = field(default_factory=list)  # (iteration, record) per log step
    evaluations: list[tuple[int, dict]] = field(default_factory=list)  # (iteration, {stat: value})


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_metrics_log(path: str | Path) -> MetricsHistory:
    """Every record of a metrics.jsonl, checked: a UserError names the file and line of the first
    bad one. A last line cut short without its newline (a run killed mid-write, or one still being
    written) is skipped with a warning, as the trainer drops it on resuming."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found (`simpledet train` writes it into the run folder)")
    text = path.read_text()
    lines = text.splitlines()
    history = MetricsHistory()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines) and not text.endswith("\n"):
                log.warning("%s, line %d: skipped, cut short (%s)", path, number, e.msg)
                continue
            raise UserError(f"{path}, line {number}: not JSON ({e.msg} at column {e.colno})") from None
        _add_record(history, record, f"{path}, line {number}")
    if not history.train and not history.evaluations:
        raise UserError(f"{path}: no records (an empty log: has the run logged its first iteration?)")
    return history


def _add_record(history: MetricsHistory, record: object, where: str) -> None:
    """Adds one metrics.jsonl record; `where` names it in messages."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {str(record)[:80]}")
    iteration = record.get("iteration", record.get("iter"))  # the trainer's key, or the short one
    if not isinstance(iteration, int) or isinstance(iteration, bool):
        raise UserError(f"{where}: no iteration number ('iteration'): {str(record)[:120]}")
    if "eval" in record:
        stats = record["eval"]
        if not isinstance(stats, dict) or not all(_is_number(v) for v in stats.values()):
            raise UserError(f"{where}: 'eval' must map stat names to numbers, got {str(stats)[:120]}")
        history.evaluations.append((iteration, stats))
        return
    bad = [k for k, v in record.items() if (k == "lr" or _is_loss(k)) and not _is_number(v)]
    if bad:
        raise UserError(f"{where}: {bad[0]} is not a number: {record[bad[0]]!r}")
    history.train.append((iteration, record))


def _is_loss(key: str) -> bool:
    return (key == "loss" or key.startswith("loss_")) and key not in NOT_LOSSES


def _series(records: list[tuple[int, dict]], key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of the records that hold `key`; COCO's -1 (no ground truth) left out."""
    points = [(i, float(r[key])) for i, r in records if key in r and r[key] != -1]
    return [i for i, _ in points], [v for _, v in points]


def plot_training_curves(history: MetricsHistory, out_dir: str | Path) -> list[Path]:
    """loss.png and lr.png from the training records; eval.png when there are evaluation records."""
    out = Path(out_dir)
    written = []
    if history.train:
        keys = sorted({k for _, r in history.train for k in r if _is_loss(k)}, key=lambda k: (k != "loss", k))
        figure = new_figure(8, 5)
        axes = figure.add_subplot()
        for key in keys:
            axes.plot(*_series(history.train, key), label=key, linewidth=2.0 if key == "loss" else 1.0)
        axes.set_xlabel("iteration")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        if keys:
            axes.legend(fontsize=8)
        written.append(save_png(figure, out / "loss.png"))

        figure = new_figure(8, 3)
        axes = figure.add_subplot()
        axes.plot(*_series(history.train, "lr"))
        axes.set_xlabel("iteration")
        axes.set_ylabel("learning rate")
        axes.grid(alpha=0.3)
        written.append(save_png(figure, out / "lr.png"))

    if history.evaluations:
        figure = new_figure(12, 4.5)
        # COCO's 12 stats, or whatever else an evaluation reports (an RPN's AR@100 ... ARl@1000)
        seen = list(dict.fromkeys(name for _, stats in history.evaluations for name in stats))
        ap_names = [n for n in seen if n in AP_NAMES or (n.startswith("AP") and n not in STAT_NAMES)]
        ar_names = [n for n in seen if n in AR_NAMES or (n.startswith("AR") and n not in STAT_NAMES)]
        for i, (names, title) in enumerate(((ap_names, "average precision"), (ar_names, "average recall"))):
            axes = figure.add_subplot(1, 2, i + 1)
            for name in names:
                iterations, values = _series(history.evaluations, name)
                if values and not all(math.isnan(v) for v in values):
                    axes.plot(iterations, values, marker="o", markersize=3, label=name)
            axes.set_xlabel("iteration")
            axes.set_title(title)
            axes.set_ylim(0, 1)
            axes.grid(alpha=0.3)
            if axes.lines:
                axes.legend(fontsize=8)
        written.append(save_png(figure, out / "eval.png"))
    return written
