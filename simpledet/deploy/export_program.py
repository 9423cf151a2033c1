"""The detector as a torch.export ExportedProgram (.pt2): one image [3, H, W] of any size in,
its detections out, loadable with torch.export.load and runnable with torch and torchvision
alone (the graph holds aten and torchvision operators, nothing of this package).

The image's height and width are symbolic. Sizes known only at run time (the boxes NMS keeps,
the RoIs per FPN level) are unbacked sizes of the graph."""

import contextlib
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor

from simpledet.deploy.exportable import ExportableDetector
from simpledet.errors import UserError
from simpledet.files import atomic_write

MIN_SIDE, MAX_SIDE = 2, 16384  # the input sizes an exported graph accepts


def export_program(detector: ExportableDetector, example: Tensor) -> torch.export.ExportedProgram:
    """detector traced on `example` (float [3, H, W]) with the image's height and width free."""
    detector.prepare(example)
    sides = {1: torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE),
             2: torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)}
    try:
        with torch.no_grad(), nms_keeps_any_count():
            return torch.export.export(detector, (example,), dynamic_shapes=(sides,), strict=False)
    except Exception as e:  # torch.export's own error types vary between releases
        raise UserError(f"{type(detector.model).__name__} cannot be exported: {blocking_operation(e)}") from e


@contextlib.contextmanager
def nms_keeps_any_count():
    """While a graph is traced: torchvision's NMS may keep any number of boxes, zero and one too.

    torchvision's fake NMS (what tracing runs instead of the kernel) sizes its output with
    create_unbacked_symint, whose lower bound is 2: a traced graph would then assert at run time
    that every NMS keeps two boxes or more, and fail on an image with a single detection. The
    override, registered in a library of its own, is removed (torchvision's is back) on exit."""
    library = torch.library.Library("torchvision", "FRAGMENT")
    torch.library.register_fake("torchvision::nms", _fake_nms, lib=library)
    try:
        # torchvision's registrations warn of that renamed torch call at every trace
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torchvision")
            yield
    finally:
        library._destroy()  # deregisters the override (what the library's garbage collection would do)


def _fake_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4, lambda: f"NMS boxes must be [N, 4], got {boxes.shape}")
    torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0],
                 lambda: f"NMS scores must be [N] for boxes {boxes.shape}, got {scores.shape}")
    kept = torch.library.get_ctx().new_dynamic_size(min=0)
    return boxes.new_empty(kept, dtype=torch.int64)


def blocking_operation(error: Exception) -> str:
    """The first line of an export error and the line of this package that raised it."""
    text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    where = re.findall(r"(simpledet/[\w/]+\.py:\d+ in \w+)", text)
    return first + (f" (at {where[-1]})" if where else "")


def save_program(program: torch.export.ExportedProgram, path: str | Path) -> None:
    atomic_write(path, lambda f: torch.export.save(program, f))
