"""The detector as one ONNX graph: resize and normalisation, backbone, heads, box decoding, NMS
and (Mask R-CNN) mask pasting. Input `image` float32 [3, H, W], RGB in [0, 1], any H and W;
outputs `boxes` [K, 4], `scores` [K], `labels` [K] (category ids) and `masks` [K, 1, H, W].

Made by torch's ONNX exporter from the ExportedProgram (export_program.py): the same graph as
the .pt2 file, operator by operator. The category names go into the model's metadata_props,
which onnx_runtime.OnnxDetector reads."""

import contextlib
import io
import json
import logging
from pathlib import Path

import torch

from simpledet.deploy.export_program import nms_keeps_any_count
from simpledet.errors import UserError
from simpledet.files import atomic_write_bytes

DEFAULT_OPSET = 19  # the first with DeformConv (the DCN configs); RoiAlign and NonMaxSuppression are older
METADATA_NAMES = "simpledet.category_names"
METADATA_IDS = "simpledet.category_ids"
INSTALL_HINT = "pip install 'simpledet-torch[deploy]'"


def require_deploy_packages() -> None:
    """UserError naming the extra to install when onnx, onnxscript or onnxruntime is missing."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            raise UserError(f"ONNX export and runtime need the `{name}` package: {INSTALL_HINT}") from None


def _stable_sort(self, stable=None, dim: int = -1, descending: bool = False):
    """aten::sort(stable=True) as ONNX TopK over the whole axis, which keeps the order of equal
    elements (the lower index first, as the ONNX operator specifies); torch's exporter has no
    translation for the stable overload."""
    from onnxscript import opset18 as op

    count = op.Reshape(op.Gather(op.Shape(self), dim, axis=0), op.Constant(value_ints=[1]))
    return op.TopK(self, count, axis=dim, largest=descending, sorted=True)


def onnx_model(program: torch.export.ExportedProgram, output_names: tuple[str, ...], opset: int = DEFAULT_OPSET,
               category_names: list[str] | None = None, category_ids: list[int] | None = None):
    """The onnx.ModelProto of an ExportedProgram of ExportableDetector, with the categories in
    its metadata_props."""
    require_deploy_packages()
    # the exporter reports its steps on stdout and each rewrite of its optimiser as an INFO log
    # the exporter traces the program again (its decompositions): NMS's sizes as in export_program
    with contextlib.redirect_stdout(io.StringIO()), _quiet("onnx_ir", "onnxscript"), nms_keeps_any_count():
        onnx_program = torch.onnx.export(
            program, dynamo=True, input_names=["image"], output_names=list(output_names), opset_version=opset,
            custom_translation_table={torch.ops.aten.sort.stable: _stable_sort}, verbose=False)
    model = onnx_program.model_proto
    for key, value in ((METADATA_NAMES, category_names), (METADATA_IDS, category_ids)):
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
    return model


def verify_onnx(model, detector: torch.nn.Module, image: torch.Tensor, *, quantised: bool = False) -> None:
    """Runs the ONNX graph in ONNX Runtime on `image` and refuses it (UserError) unless it gives
    the eager detector's detections: the same count, boxes within 0.5 px, scores within 1e-3. A
    graph that an exporter translated wrongly is never written.

    quantised (an INT8 QAT model): a value that float rounding puts on an 8-bit step's boundary
    lands one step apart in ONNX Runtime, which moves scores by ~1e-2, reorders near-equal ones and
    so changes what NMS and the detection limit keep among them; then 90% of the detections
    scoring 0.1 or more, the model's and the graph's together, need a counterpart of their label
    in the other within 2 px and 0.03 in score, in any order (a graph translated wrongly loses or
    invents most of them)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": np.ascontiguousarray(image.numpy())})
    with torch.no_grad():
        expected = [t.numpy() for t in detector(image)]
    height, width = image.shape[-2:]
    where = f"on a {height}x{width} test image"
    keep = "nothing written (--format torch-export keeps the model's own operators)"
    if quantised:
        tolerance = {"min_score": 0.1, "box_tol": 2.0, "score_tol": 0.03}
        missing, extra = _unmatched(expected, got, **tolerance), _unmatched(got, expected, **tolerance)
        compared = int((expected[1] >= 0.1).sum()) + int((got[1] >= 0.1).sum())
        if len(missing) + len(extra) > 0.1 * compared:
            raise UserError(f"the ONNX graph does not reproduce the quantised model {where}: of the detections scoring "
                            f"0.1 or more, {len(missing)} of the model's and {len(extra)} of the graph's have no "
                            f"counterpart within 2 px and 0.03; {keep}")
        return
    if len(got[0]) != len(expected[0]):
        raise UserError(f"the ONNX graph does not reproduce the model {where}: {len(got[0])} detections where the "
                        f"model gives {len(expected[0])}; {keep}")
    box_error = float(np.abs(got[0] - expected[0]).max()) if len(got[0]) else 0.0
    score_error = float(np.abs(got[1] - expected[1]).max()) if len(got[1]) else 0.0
    if box_error > 0.5 or score_error > 1e-3:
        raise UserError(f"the ONNX graph does not reproduce the model {where}: boxes differ by up to {box_error:.3g} "
                        f"px, scores by {score_error:.3g}; {keep}")


def _unmatched(expected: list, got: list, *, min_score: float, box_tol: float, score_tol: float) -> list[int]:
    """Indices of expected detections (boxes, scores, labels, ...) scoring >= min_score that no
    detection of `got` matches (same label, box and score within tolerance), each used once."""
    import numpy as np

    free = np.ones(len(got[1]), dtype=bool)
    missing = []
    for i in np.flatnonzero(expected[1] >= min_score):
        near = (free & (got[2] == expected[2][i]) & (np.abs(got[0] - expected[0][i]).max(axis=1) <= box_tol)
                & (np.abs(got[1] - expected[1][i]) <= score_tol))
        if near.any():
            free[np.flatnonzero(near)[0]] = False
        else:
            missing.append(int(i))
    return missing


def save_onnx(model, path: str | Path) -> None:
    atomic_write_bytes(path, model.SerializeToString())


@contextlib.contextmanager
def _quiet(*loggers: str):
    """The named loggers at WARNING for the duration."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
