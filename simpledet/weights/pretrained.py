"""`model.backbone.pretrained`: a pretrained file into the modules a detector says it initialises
(Detector.pretrained_modules: the backbone, and a C4 head's stage 5).

The kind of file is read off its content, never its name, and each kind has its reader:
SimpleDet's MXNet NDArray files (weights/mxnet_backbone.py, renamed to our names), and PyTorch
state dicts, .pth or .safetensors (weights/torch_backbone.py: torchvision's classification
checkpoints, `simpledet convert mxnet`'s output, the backbone of a detection checkpoint)."""

import logging
from pathlib import Path

from torch import nn

from simpledet.errors import UserError
from simpledet.weights.backbone_weights import LoadReport, PretrainedWeights, place_weights
from simpledet.weights.mxnet_backbone import read_mxnet_backbone
from simpledet.weights.mxnet_format import is_ndarray_file
from simpledet.weights.torch_backbone import read_torch_backbone

log = logging.getLogger(__name__)


def read_pretrained(path: str | Path) -> PretrainedWeights:
    """Any pretrained backbone file we read, by its content."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained backbone file not found: {path}")
    if is_ndarray_file(path):
        return read_mxnet_backbone(path)[0]
    return read_torch_backbone(path)


def load_pretrained_weights(modules: list[nn.Module], path: str | Path) -> list[LoadReport]:
    """Loads the file at `path` into each of `modules`, strictly: the first missing or mis-shaped
    parameter ends it with a UserError naming it. Logs and returns what it did, module by module."""
    weights = read_pretrained(path)
    reports = [place_weights(module, weights) for module in modules]
    for report in reports:
        log.info("pretrained backbone: %s", report.summary())
        for warning in report.warnings:
            log.warning("%s: %s", path, warning)
    return reports
