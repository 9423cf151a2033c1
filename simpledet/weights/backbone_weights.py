"""A pretrained file's arrays placed into the modules they initialise, strictly: every parameter
and BatchNorm statistic a module has must be in the file with its shape (DCN offset convs excepted:
ImageNet files have none, they start at zero), and what the file holds beyond is reported."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import ResNet, ResNetBase

# wrappers around a backbone's own names in PyTorch files: DataParallel, torchvision detection, our
# detectors; tried in this order, the one under which most of a module's names are found wins
WRAPPER_PREFIXES = ("", "module.", "backbone.body.", "backbone.")


@dataclass
class PretrainedWeights:
    """A pretrained file's arrays, before they meet a model: under our names (MXNet files, renamed
    by their reader) or the file's own (PyTorch files, maybe under a wrapper prefix)."""

    path: str
    family: str  # for messages: "ResNet v1/v1b-50", "PyTorch weights"
    state: dict[str, Tensor]
    origin: dict[str, str]  # name in `state` -> the file's name
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why
    notes: list[str] = field(default_factory=list)
    variant_hint: str | None = None  # "v1" / "v1b" when the file name says so
    # the file's name for one of our keys the file lacks (for messages); default: the key itself
    source_name: Callable[[str], str] = str
    prefixes: tuple[str, ...] = ("",)  # where a module's names may sit in `state`


@dataclass
class LoadReport:
    """What placing a file into one module did."""

    path: str
    family: str
    loaded: list[str]  # our names, every parameter and BN statistic placed
    skipped: dict[str, str]  # file name -> why it was not used (classifier, unbuilt stage)
    initialised: list[str]  # ours, left at initialisation: DCN offset convs, absent from ImageNet files
    notes: list[str]
    warnings: list[str]  # what the user should act on: a mismatch between the file and the config

    def summary(self) -> str:
        text = f"{self.path} ({self.family}): {len(self.loaded)} arrays loaded"
        if self.skipped:
            shown = ", ".join(list(self.skipped)[:4]) + (", ..." if len(self.skipped) > 4 else "")
            text += f", {len(self.skipped)} skipped ({shown})"
        if self.initialised:
            text += f", {len(self.initialised)} kept at initialisation (DCN offsets)"
        return text + "".join(f"\n  note: {n}" for n in self.notes + self.warnings)


def _prefix_for(module: nn.Module, weights: PretrainedWeights) -> str:
    keys = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    hits = [sum(prefix + k in weights.state for k in keys) for prefix in weights.prefixes]
    return weights.prefixes[hits.index(max(hits))]


def place_weights(module: nn.Module, weights: PretrainedWeights) -> LoadReport:
    """Copies `weights` into `module` (a backbone, or a C4 head holding `layer4`), strictly."""
    expected = module.state_dict()
    prefix = _prefix_for(module, weights)
    report = LoadReport(weights.path, weights.family, [], dict(weights.skipped), [], list(weights.notes), [])
    for key, target in expected.items():
        if key.endswith("num_batches_tracked"):
            continue
        if prefix + key not in weights.state:
            if ".offset_conv." in key:
                report.initialised.append(key)
                continue
            source = weights.source_name(prefix + key)
            named = f" ({source})" if source != key else ""
            raise UserError(f"{weights.path}: the backbone's {key}{named} is not in the file; "
                            f"{_fit_hint(module, weights)}")
        value = weights.state[prefix + key]
        if tuple(value.shape) != tuple(target.shape):
            raise UserError(f"{weights.path}: {weights.origin.get(prefix + key, prefix + key)} has shape "
                            f"{tuple(value.shape)}, the backbone's {key} expects {tuple(target.shape)}; "
                            f"{_fit_hint(module, weights)}")
    for name in weights.state:
        if name.startswith(prefix) and name[len(prefix):] in expected:
            continue
        if not name.startswith(prefix):
            report.skipped[weights.origin[name]] = "outside the backbone"
            continue
        if name[len(prefix):].startswith("data_bn.") and isinstance(module, ResNetBase):
            # a module that sees the input (not a C4 detector's stage-5 head) must whiten it too
            raise UserError(f"{weights.path}: the file whitens its input ({weights.origin[name]}) but the backbone "
                            f"has no data_bn: set model.backbone.data_bn=True ({weights.family})")
        report.skipped[weights.origin[name]] = "not in this backbone (a stage or layer it does not build)"
    with torch.no_grad():
        for key, target in expected.items():
            if prefix + key in weights.state:
                target.copy_(weights.state[prefix + key].to(target.dtype))
                report.loaded.append(key)
    if weights.variant_hint and isinstance(module, ResNet) and weights.variant_hint != module.variant:
        report.warnings.append(f"the file name says ResNet {weights.variant_hint} but the backbone is "
                               f"{module.variant}: same parameters, different strides; check model.backbone.variant")
    return report


def _fit_hint(module: nn.Module, weights: PretrainedWeights) -> str:
    return (f"the file holds {weights.family}, the backbone is a {type(module).__name__}: "
            f"does the config match the file?")
