"""SimpleDet's ImageNet-pretrained backbone files (MXNet `.params`: `resnet-v1-50-0000.params`,
`resnet50_v1b-0000.params`, `resnet-101-0000.params`, `resnext-101-64x4d-0000.params`, ...), read
under our parameter names, and `simpledet convert mxnet`.

The family of an MXNet file is read off its content (names and shapes), never its file name:
  - post-activation units with a BN on the shortcut (`stageN_unitM_sc_bn_*`): ResNet v1 / v1b, or
    ResNeXt when conv2 is grouped (groups = conv2 out channels / conv2 in channels per group);
  - pre-activation units with a bare shortcut conv: ResNet v2;
  - `bn_data_*`: MXNet's input whitening BN (v2 and ResNeXt files), kept as `data_bn`;
  - depth from the number of units per stage, base width from the stem's channels (64 in
    SimpleDet's files; less in the reduced files tests use).
ResNet v1 (MSRA: stride in the 1x1 conv) and v1b (GluonCV: stride in the 3x3 conv) have the same
names and shapes: the config's `variant` decides; a file name that says otherwise gets a warning.

MXNet's frozen BN (use_global_stats, eps 1e-5 + 1e-10) is gamma * (x - mean) / sqrt(var + eps) +
beta, exactly our FrozenBatchNorm2d (eps 1e-5: the 1e-10 is below float32 resolution next to any
real variance). `bn_data` is the one BN with fix_gamma=True: MXNet ignores its stored gamma, so ones
are placed instead.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simpledet.errors import UserError
from simpledet.files import atomic_write_text
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.weights.backbone_weights import PretrainedWeights, place_weights
from simpledet.weights.file_format import writable_format, write_state_dict
from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes
from simpledet.weights.mxnet_names import MXNET_FIX_GAMMA, mxnet_resnet_key

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


@dataclass(frozen=True)
class MXNetBackboneFamily:
    """What an MXNet backbone file holds, read off its names and shapes."""

    kind: str  # "resnet_v1" (v1 or v1b), "resnext" or "resnet_v2"
    depth: int
    groups: int = 1
    width_per_group: int = 64  # at 64 planes, our ResNetConfig's convention
    data_bn: bool = False
    base_width: int = 64  # the stem's channels and stage 1's planes

    def describe(self) -> str:
        name = {"resnet_v1": "ResNet v1/v1b", "resnet_v2": "ResNet v2 (pre-activation)",
                "resnext": f"ResNeXt {self.groups}x{self.width_per_group}d"}[self.kind]
        slim = f" at base width {self.base_width}" if self.base_width != 64 else ""
        return f"{name}-{self.depth}{slim}" + (" with input whitening (bn_data)" if self.data_bn else "")

    def config_hint(self, variant: str | None = None) -> str:
        """The backbone config these weights fit (`variant`: what the file name says, if anything)."""
        width = f", base_width={self.base_width}" if self.base_width != 64 else ""
        if self.kind == "resnet_v2":
            return f"ResNetV2Config(depth={self.depth}{width}, data_bn={self.data_bn})"
        extra = width + (f", variant={variant!r}" if variant else "")
        if self.kind == "resnext":
            extra += f", groups={self.groups}, width_per_group={self.width_per_group}"
        return f"ResNetConfig(depth={self.depth}{extra}, data_bn={self.data_bn})"

    def build(self, variant: str = "v1b") -> nn.Module:
        """A frozen-BN backbone of this family; `variant` (v1 / v1b) only moves strides."""
        if self.kind == "resnet_v2":
            return ResNetV2Config(depth=self.depth, data_bn=self.data_bn, base_width=self.base_width).build()
        return ResNetConfig(depth=self.depth, variant=variant, groups=self.groups, width_per_group=self.width_per_group,
                            data_bn=self.data_bn, base_width=self.base_width).build()


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
    base = shapes["conv0_weight"][0]
    if "sc_weight" in unit_layers and "sc_bn_moving_mean" not in unit_layers:
        return MXNetBackboneFamily("resnet_v2", depth, data_bn=data_bn, base_width=base)
    # groups from any bottleneck's 3x3 conv, (inner, inner / groups, 3, 3); planes `base` in stage 1, x2 per stage
    conv2 = next(((int(m.group(1)), shape) for name, shape in shapes.items()
                  if (m := _UNIT.match(name)) and name.endswith("_conv2_weight")), None)
    if kind == "basic" or conv2 is None or len(conv2[1]) != 4 or conv2[1][0] == conv2[1][1]:
        return MXNetBackboneFamily("resnet_v1", depth, data_bn=data_bn, base_width=base)
    stage, (inner, per_group) = conv2[0], conv2[1][:2]
    groups, planes = inner // per_group, base * 2 ** (stage - 1)
    # ResNetConfig's rule: inner = int(planes * width_per_group / 64) * groups
    return MXNetBackboneFamily("resnext", depth, groups, inner * 64 // (planes * groups), data_bn, base)


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
    v2 = family.kind == "resnet_v2"
    variant_hint = _variant_from_name(str(path))
    out = PretrainedWeights(str(path), f"{family.describe()} (fits {family.config_hint(variant_hint)})", {}, {},
                            variant_hint=variant_hint, source_name=lambda key: _mxnet_name_of(key, v2))
    for name, value in bare.items():
        try:
            key = mxnet_resnet_key(name, v2)
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


def _mxnet_name_of(key: str, v2: bool) -> str:
    """The MXNet name our `key` has in SimpleDet's files (for a key a file lacks: the name it would
    have there). A BN's gamma / beta and a conv's weight / bias map to the same key: each layer is
    asked for its own suffixes."""
    m = re.match(r"^layer(\d)\.(\d+)\.", key)
    unit = f"stage{m.group(1)}_unit{int(m.group(2)) + 1}_" if m else ""
    candidates = [unit + layer + "_" + suffix for layer in (_MX_LAYERS if m else _MX_STEM)
                  for suffix in (_MX_BN_SUFFIXES if "bn" in layer else _MX_CONV_SUFFIXES)]
    for candidate in candidates:
        try:
            if mxnet_resnet_key(candidate, v2) == key:
                return candidate
        except KeyError:
            continue
    return key


def convert_mxnet_backbone(src: str | Path, dst: str | Path) -> str:
    """`simpledet convert mxnet SRC.params DST`: the backbone's weights under our names, in the
    format DST's extension says (+ a JSON beside it), checked by loading them into the family's
    backbone."""
    writable_format(dst)
    weights, family = read_mxnet_backbone(src)
    # every parameter of the family must be there
    report = place_weights(family.build(weights.variant_hint or "v1b"), weights)
    dst = Path(dst)
    meta = {"format": "pt", "producer": "simpledet", "converted_from": "mxnet", "source": Path(src).name,
            "family": family.describe(), "config": family.config_hint(weights.variant_hint),
            "variant_hint": weights.variant_hint or ""}
    tensors = {k: v.float().contiguous() for k, v in weights.state.items()}
    write_state_dict(dst, tensors, metadata=meta)
    info = dict(meta, skipped=report.skipped, notes=report.notes)
    atomic_write_text(dst.with_suffix(".json"), json.dumps(info, indent=2) + "\n")
    lines = [f"{src}: {family.describe()}, {len(tensors)} arrays -> {dst}",
             f"  use with model.backbone = {family.config_hint(weights.variant_hint)}, "
             f"model.backbone.pretrained={dst}"]
    if report.skipped:
        lines.append(f"  skipped: {', '.join(f'{k} ({v})' for k, v in report.skipped.items())}")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)
