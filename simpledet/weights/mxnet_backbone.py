"""ImageNet-pretrained backbones into our ResNet / ResNetV2: SimpleDet's MXNet files
(`resnet-v1-50-0000.params`, `resnet50_v1b-0000.params`, `resnet-101-0000.params`,
`resnext-101-64x4d-0000.params`, ...), torchvision classification state_dicts, and the
safetensors that `simpledet convert mxnet` writes.

The family of an MXNet file is read off its content (names and shapes), never its file name:
  - post-activation units with a BN on the shortcut (`stageN_unitM_sc_bn_*`): ResNet v1 / v1b, or
    ResNeXt when conv2 is grouped (groups = conv2 out channels / conv2 in channels per group);
  - pre-activation units with a bare shortcut conv: ResNet v2;
  - `bn_data_*`: MXNet's input whitening BN (v2 and ResNeXt files), kept as `data_bn`;
  - depth from the number of units per stage.
ResNet v1 (MSRA: stride in the 1x1 conv) and v1b (GluonCV: stride in the 3x3 conv) have the same
names and shapes: the config's `variant` decides; a file name that says otherwise gets a warning.

MXNet's frozen BN (use_global_stats, eps 1e-5 + 1e-10) is gamma * (x - mean) / sqrt(var + eps) +
beta, exactly our FrozenBatchNorm2d (eps 1e-5: the 1e-10 is below float32 resolution next to any
real variance). `bn_data` is the one BN with fix_gamma=True: MXNet ignores its stored gamma, so ones
are placed instead.
"""

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from simpledet.engine.checkpoint import read_state_dict
from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import MXNET_FIX_GAMMA, ResNet, mxnet_name_map
from simpledet.modeling.backbones.resnet_v2 import ResNetV2, mxnet_name_map_v2
from simpledet.weights.mxnet_format import is_ndarray_file, read_ndarray_file, split_prefixes

log = logging.getLogger(__name__)

_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottleneck", (3, 4, 6, 3)): 50,
           ("bottleneck", (3, 4, 23, 3)): 101, ("bottleneck", (3, 8, 36, 3)): 152,
           ("bottleneck", (3, 24, 36, 3)): 200}
_UNIT = re.compile(r"^stage([1-4])_unit(\d+)_")
# SimpleDet's own file names for the two layouts that content cannot tell apart
_NAMED_VARIANT = ((re.compile(r"resnet-v1-\d+"), "v1"), (re.compile(r"resnet\d+_v1b"), "v1b"))
# every layer and suffix SimpleDet's backbones use: to name the MXNet array a missing key wants
_MX_LAYERS = ("conv1", "conv2", "conv3", "bn1", "bn2", "bn3", "sc", "sc_bn", "conv2_offset")
_MX_STEM = ("bn_data", "conv0", "bn0", "bn1")
_MX_BN_SUFFIXES = ("gamma", "beta", "moving_mean", "moving_var")
_MX_CONV_SUFFIXES = ("weight", "bias")
# wrappers around a ResNet's own names: DataParallel, torchvision detection, our detectors
_PREFIXES = ("module.", "backbone.body.", "backbone.")


@dataclass(frozen=True)
class MXNetBackboneFamily:
    """What an MXNet backbone file holds, read off its names and shapes."""

    kind: str  # "resnet_v1" (v1 or v1b), "resnext" or "resnet_v2"
    depth: int
    groups: int = 1
    width_per_group: int = 64  # at 64 planes, our ResNetConfig's convention
    data_bn: bool = False

    def describe(self) -> str:
        name = {"resnet_v1": "ResNet v1/v1b", "resnet_v2": "ResNet v2 (pre-activation)",
                "resnext": f"ResNeXt {self.groups}x{self.width_per_group}d"}[self.kind]
        return f"{name}-{self.depth}" + (" with input whitening (bn_data)" if self.data_bn else "")

    def config_hint(self, variant: str | None = None) -> str:
        """The backbone config these weights fit (`variant`: what the file name says, if anything)."""
        if self.kind == "resnet_v2":
            return f"ResNetV2Config(depth={self.depth}, data_bn={self.data_bn})"
        extra = f", variant={variant!r}" if variant else ""
        if self.kind == "resnext":
            extra += f", groups={self.groups}, width_per_group={self.width_per_group}"
        return f"ResNetConfig(depth={self.depth}{extra}, data_bn={self.data_bn})"

    def build(self, variant: str = "v1b") -> nn.Module:
        """A frozen-BN backbone of this family; `variant` (v1 / v1b) only moves strides."""
        if self.kind == "resnet_v2":
            return ResNetV2(self.depth, data_bn=self.data_bn)
        return ResNet(self.depth, variant, groups=self.groups, width_per_group=self.width_per_group,
                      data_bn=self.data_bn)


@dataclass
class PretrainedWeights:
    """A pretrained file's arrays under our names, before they meet a model."""

    path: str
    family: str  # for messages: "ResNet v1/v1b-50", "PyTorch-named weights"
    state: dict[str, Tensor]
    origin: dict[str, str]  # our name -> the file's name
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why
    notes: list[str] = field(default_factory=list)
    variant_hint: str | None = None  # "v1" / "v1b" when the file name says so
    name_map: Callable[[str], str] | None = None  # MXNet name -> ours, for MXNet files

    def source_name(self, key: str) -> str:
        """The file's name for our `key` (for a key the file lacks: the name it would have)."""
        if key in self.origin or self.name_map is None:
            return self.origin.get(key, key)
        m = re.match(r"^layer(\d)\.(\d+)\.", key)
        unit = f"stage{m.group(1)}_unit{int(m.group(2)) + 1}_" if m else ""
        # a BN's gamma / beta and a conv's weight / bias map to the same key: ask each layer its own
        candidates = [unit + layer + "_" + suffix for layer in (_MX_LAYERS if m else _MX_STEM)
                      for suffix in (_MX_BN_SUFFIXES if "bn" in layer else _MX_CONV_SUFFIXES)]
        for candidate in candidates:
            try:
                if self.name_map(candidate) == key:
                    return candidate
            except KeyError:
                continue
        return key


@dataclass
class LoadReport:
    """What load_pretrained_backbone did."""

    path: str
    family: str
    loaded: list[str]  # our names, every parameter and BN statistic placed
    skipped: dict[str, str]  # file name -> why it was not used (classifier, unbuilt stage)
    initialised: list[str]  # ours, left at initialisation: DCN offset convs, absent from ImageNet files
    notes: list[str]

    def summary(self) -> str:
        text = f"{self.path} ({self.family}): {len(self.loaded)} arrays loaded"
        if self.skipped:
            shown = ", ".join(list(self.skipped)[:4]) + (", ..." if len(self.skipped) > 4 else "")
            text += f", {len(self.skipped)} skipped ({shown})"
        if self.initialised:
            text += f", {len(self.initialised)} kept at initialisation (DCN offsets)"
        return text + "".join(f"\n  note: {n}" for n in self.notes)


def detect_mxnet_family(shapes: Mapping[str, tuple[int, ...]], source: str = "<arrays>") -> MXNetBackboneFamily:
    """The family of a SimpleDet backbone from its bare (unprefixed) names and shapes."""
    blocks = [0, 0, 0, 0]
    for name in shapes:
        m = _UNIT.match(name)
        if m:
            stage, unit = int(m.group(1)), int(m.group(2))
            blocks[stage - 1] = max(blocks[stage - 1], unit)
    if "conv0_weight" not in shapes or not all(blocks):
        first = ", ".join(list(shapes)[:5])
        raise UserError(f"{source}: not a SimpleDet ResNet backbone (expected conv0_weight and stage1..4 units; "
                        f"the file starts with {first})")
    unit_layers = {_UNIT.sub("", name) for name in shapes if _UNIT.match(name)}
    kind = "bottleneck" if "conv3_weight" in unit_layers else "basic"
    depth = _DEPTHS.get((kind, tuple(blocks)))
    if depth is None:
        raise UserError(f"{source}: {kind} units per stage {tuple(blocks)} match no ResNet depth")
    data_bn = "bn_data_moving_mean" in shapes or "bn_data_gamma" in shapes
    if "sc_weight" in unit_layers and "sc_bn_moving_mean" not in unit_layers:
        return MXNetBackboneFamily("resnet_v2", depth, data_bn=data_bn)
    # groups from any bottleneck's 3x3 conv, (inner, inner / groups, 3, 3); planes 64 in stage 1, x2 per stage
    conv2 = next(((int(m.group(1)), shape) for name, shape in shapes.items()
                  if (m := _UNIT.match(name)) and name.endswith("_conv2_weight")), None)
    if kind == "basic" or conv2 is None or len(conv2[1]) != 4 or conv2[1][0] == conv2[1][1]:
        return MXNetBackboneFamily("resnet_v1", depth, data_bn=data_bn)
    stage, (inner, per_group) = conv2[0], conv2[1][:2]
    groups, planes = inner // per_group, 64 * 2 ** (stage - 1)
    # ResNetConfig's rule: inner = int(planes * width_per_group / 64) * groups
    return MXNetBackboneFamily("resnext", depth, groups, inner * 64 // (planes * groups), data_bn)


def _variant_from_name(path: str) -> str | None:
    stem = Path(path).name
    for pattern, variant in _NAMED_VARIANT:
        if pattern.search(stem):
            return variant
    return None


def read_mxnet_backbone(path: str | Path) -> tuple[PretrainedWeights, MXNetBackboneFamily]:
    """A SimpleDet MXNet backbone file, renamed to our parameter names."""
    arrays = read_ndarray_file(path)
    if isinstance(arrays, list):
        raise UserError(f"{path}: an unnamed list of arrays, not a backbone checkpoint")
    bare = split_prefixes(arrays, str(path))
    family = detect_mxnet_family({k: tuple(v.shape) for k, v in bare.items()}, str(path))
    name_map = mxnet_name_map_v2 if family.kind == "resnet_v2" else mxnet_name_map
    out = PretrainedWeights(str(path), family.describe(), {}, {}, variant_hint=_variant_from_name(str(path)),
                            name_map=name_map)
    for name, value in bare.items():
        try:
            key = name_map(name)
        except KeyError:
            why = "ImageNet classifier" if name.startswith("fc") else "not a backbone parameter"
            out.skipped[name] = why
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if name in MXNET_FIX_GAMMA:  # MXNet computed with gamma = 1 whatever the file holds
            out.notes.append(f"{name}: fix_gamma=True in MXNet, ones placed (the file holds {value.tolist()})")
            tensor = torch.ones_like(tensor)
        out.state[key], out.origin[key] = tensor, name
    return out, family


def read_torch_backbone(path: str | Path) -> PretrainedWeights:
    """A torchvision ResNet / ResNeXt classification state_dict, or our own backbone weights."""
    state, outside = read_state_dict(path), {}
    if "conv1.weight" not in state:
        prefix = next((p for p in _PREFIXES if p + "conv1.weight" in state), "")
        outside = {k: "outside the backbone" for k in state if not k.startswith(prefix)}
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "conv1.weight" not in state:
        raise UserError(f"{path}: not ResNet backbone weights (no conv1.weight; it starts with "
                        f"{', '.join(list(state)[:5])})")
    out = PretrainedWeights(str(path), "PyTorch-named ResNet weights", {}, {}, skipped=outside)
    if str(path).endswith(".safetensors"):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        out.variant_hint = meta.get("variant_hint") or None
        if "family" in meta:
            out.family = f"{meta['family']}, converted from MXNet"
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue  # a counter of training BN, meaningless here
        if name.startswith("fc."):
            out.skipped[name] = "ImageNet classifier"
            continue
        out.state[name], out.origin[name] = value, name
    return out


def read_pretrained(path: str | Path) -> tuple[PretrainedWeights, MXNetBackboneFamily | None]:
    """Any pretrained backbone file we read, renamed to our names; the family for MXNet files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained backbone file not found: {path}")
    if is_ndarray_file(path):
        return read_mxnet_backbone(path)
    return read_torch_backbone(path), None


def _model_variant(backbone: nn.Module) -> str | None:
    """v1 puts stage 2's stride in the first 1x1 conv, v1b in the 3x3 conv."""
    layer2 = getattr(backbone, "layer2", None)
    if not isinstance(backbone, ResNet) or layer2 is None or not hasattr(layer2[0], "conv3"):
        return None
    return "v1" if layer2[0].conv1.stride == (2, 2) else "v1b"


def place_weights(module: nn.Module, weights: PretrainedWeights) -> LoadReport:
    """Copies `weights` into `module` (a backbone, or a C4 head holding `layer4`); every parameter
    and BN statistic must be there with its shape (DCN offset convs excepted: ImageNet files have
    none, they start at zero). Arrays the module does not use are reported as skipped."""
    expected = module.state_dict()
    report = LoadReport(weights.path, weights.family, [], dict(weights.skipped), [], list(weights.notes))
    for key, target in expected.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in weights.state:
            if ".offset_conv." in key:
                report.initialised.append(key)
                continue
            source = weights.source_name(key)
            named = f" ({source})" if source != key else ""
            raise UserError(f"{weights.path}: the backbone's {key}{named} is not in the file; "
                            f"{_fit_hint(module, weights)}")
        value = weights.state[key]
        if tuple(value.shape) != tuple(target.shape):
            raise UserError(f"{weights.path}: {weights.source_name(key)} has shape {tuple(value.shape)}, the "
                            f"backbone's {key} expects {tuple(target.shape)}; {_fit_hint(module, weights)}")
    for key, value in weights.state.items():
        if key in expected:
            continue
        if key.startswith("data_bn.") and hasattr(module, "conv1"):
            # a module that sees the input (not a C4 detector's stage-5 head) must whiten it too
            raise UserError(f"{weights.path}: the file whitens its input ({weights.origin[key]}) but the backbone "
                            f"has no data_bn: set model.backbone.data_bn=True ({weights.family})")
        report.skipped[weights.origin[key]] = "not in this backbone (a stage or layer it does not build)"
    with torch.no_grad():
        for key, target in expected.items():
            if key in weights.state:
                target.copy_(weights.state[key].to(target.dtype))
                report.loaded.append(key)
    model_variant = _model_variant(module)
    if weights.variant_hint and model_variant and weights.variant_hint != model_variant:
        report.notes.append(f"the file name says ResNet {weights.variant_hint} but the backbone is {model_variant}: "
                            f"same parameters, different strides; check model.backbone.variant")
    return report


def _fit_hint(module: nn.Module, weights: PretrainedWeights) -> str:
    return (f"the file holds {weights.family}, the backbone is a {type(module).__name__}: "
            f"does the config match the file?")


def load_pretrained_backbone(backbone: nn.Module, path: str | Path) -> LoadReport:
    """Loads an ImageNet-pretrained file (MXNet .params from SimpleDet, torchvision .pth, or our
    converted .safetensors) into `backbone` (ResNet or ResNetV2, or a C4 head whose stage 5 is
    named `layer4`), strictly: the first missing or mis-shaped parameter ends it with a UserError
    naming it. Logs and returns what it did."""
    weights, family = read_pretrained(path)
    if family is not None:
        weights.family = f"{family.describe()} (fits {family.config_hint(weights.variant_hint)})"
    report = place_weights(backbone, weights)
    log.info("pretrained backbone: %s", report.summary())
    for note in report.notes:
        if "file name says" in note:
            log.warning("%s: %s", path, note)
    return report


def convert_mxnet_backbone(src: str | Path, dst: str | Path) -> str:
    """`simpledet convert mxnet SRC.params DST`: the backbone's weights under our names, as
    safetensors (+ a JSON beside it), checked by loading them into the family's backbone."""
    weights, family = read_mxnet_backbone(src)
    # every parameter of the family must be there
    report = place_weights(family.build(weights.variant_hint or "v1b"), weights)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "producer": "simpledet", "converted_from": "mxnet", "source": Path(src).name,
            "family": family.describe(), "config": family.config_hint(weights.variant_hint),
            "variant_hint": weights.variant_hint or ""}
    tensors = {k: v.float().contiguous() for k, v in weights.state.items()}
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:  # temp file + rename: a killed conversion leaves no half-written weights
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    info = dict(meta, skipped=report.skipped, notes=report.notes)
    dst.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    lines = [f"{src}: {family.describe()}, {len(tensors)} arrays -> {dst}",
             f"  use with model.backbone = {family.config_hint(weights.variant_hint)}, "
             f"model.backbone.pretrained={dst}"]
    if report.skipped:
        lines.append(f"  skipped: {', '.join(f'{k} ({v})' for k, v in report.skipped.items())}")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)
