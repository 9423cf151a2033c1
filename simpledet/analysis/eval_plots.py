"""What `simpledet eval --plots` writes beside metrics.json: pr_curves.png, confusion_matrix.png
and .json, and worst_images/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from simpledet.analysis.confusion_matrix import confusion_over_images, write_confusion_matrix
from simpledet.analysis.figures import require_matplotlib
from simpledet.analysis.image_boxes import class_names, group_by_image
from simpledet.analysis.pr_curves import class_curves, plot_pr_curves
from simpledet.analysis.worst_images import draw_worst_images
from simpledet.engine.evaluator import EvalResult

# the pictures draw_worst_images names; an earlier run's are replaced, nothing else in the folder is touched
_WORST_IMAGE_PATTERN = "[0-9][0-9]_missed*_false*_*.png"


def write_eval_plots(out_dir: str | Path, ground_truth: dict, records: list[dict], result: EvalResult,
                     load_image: Callable[[int], Tensor]) -> list[Path]:
    """The box evaluation's pictures; `load_image(image_id)` gives an image as float CHW in [0, 1]."""
    require_matplotlib()
    out = Path(out_dir)
    names = class_names(ground_truth)
    written = []
    if result.precision is not None:
        written.append(plot_pr_curves(class_curves(result.precision, names), out / "pr_curves.png"))
    images = group_by_image(ground_truth, records)
    confusion = confusion_over_images(images, names)
    write_confusion_matrix(confusion, out / "confusion_matrix.json", out / "confusion_matrix.png")
    written += [out / "confusion_matrix.json", out / "confusion_matrix.png"]
    worst_dir = out / "worst_images"
    for old in worst_dir.glob(_WORST_IMAGE_PATTERN):
        old.unlink()
    written += draw_worst_images(worst_dir, ground_truth, images, confusion, load_image)
    return written
