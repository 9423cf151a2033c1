"""`model.backbone.pretrained`: a pretrained file into the modules a detector says it initialises
(Detector.pretrained_modules: the backbone, and a C4 head's stage 5).

It names a file, or weights by name (weights/by_name.py): `simpledet:NAME`, one of SimpleDet's
ImageNet files, downloaded and converted once; `torchvision:ENUM`, a torchvision weights enum.
The kind of a file is read off its content, never its name (weights/file_format.py), and each
kind has its reader: SimpleDet's MXNet NDArray files (weights/mxnet_backbone.py, renamed to our
names), and PyTorch state dicts, torch.save or safetensors (weights/torch_backbone.py:
torchvision's classification checkpoints, `simpledet convert mxnet`'s output, the backbone of a
detection checkpoint)."""

import logging
from pathlib import Path

from torch import nn

from simpledet.errors import UserError
from simpledet.weights import by_name
from simpledet.weights.backbone_weights import LoadReport, PretrainedWeights, place_weights
from simpledet.weights.file_format import MXNET, sniff
from simpledet.weights.mxnet_backbone import read_mxnet_backbone
from simpledet.weights.torch_backbone import backbone_weights_from_state, read_torch_backbone

log = logging.getLogger(__name__)


def read_pretrained(spec: str | Path) -> PretrainedWeights:
    """Any pretrained backbone we read: a file, by its content, or weights by name."""
    spec = str(spec)
    if spec.startswith(by_name.SIMPLEDET):
        return read_torch_backbone(by_name.fetch_simpledet(spec))
    if spec.startswith(by_name.TORCHVISION):
        return backbone_weights_from_state(by_name.fetch_torchvision(spec), spec)
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"pretrained backbone file not found: {path} (model.backbone.pretrained takes a path, "
                        f"or a name: {by_name.SIMPLEDET}NAME or {by_name.TORCHVISION}ENUM; `simpledet weights list`)")
    if sniff(path) == MXNET:
        return read_mxnet_backbone(path)[0]
    return read_torch_backbone(path)


def load_pretrained_weights(modules: list[nn.Module], path: str | Path) -> list[LoadReport]:
    """Loads the weights `path` names into each of `modules`, strictly: the first missing or
    mis-shaped parameter ends it with a UserError naming it. Logs and returns what it did, module
    by module."""
    weights = read_pretrained(path)
    reports = [place_weights(module, weights) for module in modules]
    for report in reports:
        log.info("pretrained backbone: %s", report.summary())
        for warning in report.warnings:
            log.warning("%s: %s", path, warning)
    return reports
