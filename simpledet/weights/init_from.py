"""`train.init_from`: a new run starts from another run's weights, for fine-tuning.

The source is a checkpoint of ours, a converted SimpleDet (`simpledet convert simpledet`) or
torchvision file, a torchvision detection state dict (renamed here, as `simpledet convert
torchvision` does), or a name (`torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1`; see
weights/by_name.py). Every tensor whose name and shape match the model's is copied; the others
(a classifier for another number of classes) keep the model's fresh initialisation. The log lists
exactly what was not carried over, both ways.

Unlike `--resume` it starts a new run (iteration 0, a fresh optimizer), and the trainer does not
apply it again when a run is resumed: the checkpoint wins. Unlike `model.backbone.pretrained` it
covers the whole detector, and it is applied after the backbone's pretrained weights.
"""

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.weights import by_name
from simpledet.weights.file_format import read_state_dict
from simpledet.weights.torchvision import convert_torchvision, is_torchvision_detection

log = logging.getLogger(__name__)


@dataclass
class InitReport:
    """What init_from did: names are the model's (a torchvision source's, renamed)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    shape_differs: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # (file, model)
    not_in_source: list[str] = field(default_factory=list)  # kept at initialisation
    no_place: dict[str, tuple[int, ...]] = field(default_factory=dict)  # the file's, absent from the model

    def summary(self) -> str:
        total = len(self.loaded) + len(self.shape_differs) + len(self.not_in_source)
        lines = [f"init_from {self.source}: {len(self.loaded)} of the model's {total} tensors loaded"]
        lines += [f"  not carried over, shape {tuple(src)} in the file, {tuple(dst)} in the model (kept at "
                  f"initialisation): {name}" for name, (src, dst) in self.shape_differs.items()]
        lines += [f"  not in the file (kept at initialisation): {name}" for name in self.not_in_source]
        lines += [f"  in the file with no place in the model: {name} {tuple(shape)}"
                  for name, shape in self.no_place.items()]
        return "\n".join(lines)


def read_init_source(spec: str) -> dict[str, Tensor]:
    """The state dict `spec` names, under our parameter names."""
    if spec.startswith(by_name.TORCHVISION):
        state = by_name.fetch_torchvision(spec)
    elif spec.startswith(by_name.SIMPLEDET):
        state = read_state_dict(by_name.fetch_simpledet(spec))
    else:
        state = read_state_dict(spec)
    if is_torchvision_detection(state):
        converted, skipped = convert_torchvision(state)
        # the counters of trainable BN are dropped by the conversion; anything else is reported
        leftovers = {k: state[k] for k in skipped if not k.endswith("num_batches_tracked")}
        state = {**converted, **leftovers}
    return state


def init_from(model: nn.Module, spec: str) -> InitReport:
    """Copies every tensor of `spec` whose name and shape match into `model`, logs the rest."""
    source = read_init_source(spec)
    from simpledet.engine.qat import float_state_dict_keys  # a float checkpoint into a QAT model: weight names

    source = float_state_dict_keys(source, model)
    report = InitReport(spec)
    target = model.state_dict()
    with torch.no_grad():
        for name, value in target.items():
            if name in source and tuple(source[name].shape) == tuple(value.shape):
                value.copy_(source[name])
                report.loaded.append(name)
            elif name.endswith("num_batches_tracked"):
                continue  # trainable BN's step counter, absent from frozen-BN files: not worth a line
            elif name not in source:
                report.not_in_source.append(name)
            else:
                report.shape_differs[name] = (tuple(source[name].shape), tuple(value.shape))
    report.no_place = {name: tuple(v.shape) for name, v in source.items()
                       if name not in target and not name.endswith("num_batches_tracked")}
    if not report.loaded:
        raise UserError(f"train.init_from={spec}: none of its {len(source)} tensors fits this model by name and "
                        f"shape (the file has {', '.join(list(source)[:3])}, ...; the model "
                        f"{', '.join(list(target)[:3])}, ...). A backbone's ImageNet weights go in "
                        "model.backbone.pretrained; init_from takes a whole detector's checkpoint")
    log.info("%s", report.summary())
    return report
