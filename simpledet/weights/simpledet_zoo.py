"""SimpleDet zoo detector checkpoints (MXNet Module `.params`) into our detectors.

`convert_simpledet_checkpoint(src, config, dst)` reads a SimpleDet checkpoint (`arg:` / `aux:`
names), maps every array onto the state_dict of our config of the same name, transforms the few
layouts that differ, and writes our safetensors weights. Facts, read off SimpleDet's source
(TuSimple/simpledet, symbol/builder.py, models/FPN/builder.py, models/cascade_rcnn/builder.py,
models/retinanet/builder.py, models/maskrcnn/builder.py):

- Backbone: `stageN_unitM_*`, `conv0`, `bn0`, `bn_data`, (v2) `bn1` after stage 4: the names of
  resnet.mxnet_name_map / resnet_v2.mxnet_name_map_v2, placed under `backbone.`, `backbone.body.`
  (TridentNet: one shared copy of the weights) or, for the stage-4 units of a C4 detector's C5 head,
  `roi_heads.box_head.` (the `layer4.*` of our Res5 head; v2's final `bn1` is its `final_bn`).
  DCN offsets (`stageN_unitM_conv2_offset_weight`) -> `conv2.offset_conv.weight`; SimpleDet's offset
  conv has no bias, ours has one: it is set to zero (the same function).
- RPN classification: SimpleDet's `rpn_conv_cls` / `rpn_cls_logit` has 2A channels, reshaped to
  (N, 2, A*H, W) and soft-maxed over axis 1 (FPN builder: `reshape(shape=(0, 2, -1, 0))`; Proposal
  reads `cls_prob[:, A:]` as foreground): channels [0:A] are background, [A:2A] foreground. Our RPN
  has one sigmoid logit per anchor and sigmoid(fg - bg) = softmax(bg, fg)[fg], so our weight is
  W[A:2A] - W[0:A], bias b[A:2A] - b[0:A].
- RPN box deltas: 4A channels anchor-major (channel a*4+k), as the Proposal op reads them: as ours.
  Anchors: ratio-major, scale-minor in both. Precomputed anchors (`anchor_stride*`) are skipped:
  ours are recomputed.
- Class order: SimpleDet's label i + 1 is COCO's i-th category id in getCatIds() (ascending) order,
  0 background (utils/create_coco_roidb.py): our contiguous labels.
- R-CNN: `bbox_cls_logit` has num_classes + 1 outputs, background first: as ours.
  `bbox_reg_delta` class-agnostic has 2 x 4 outputs (background, foreground: `num_reg_class = 2`):
  ours has 4, the foreground half [4:8] is taken; per-class 81 x 4: as ours.
  `bbox_fc1` of the 2fc head is a 1x1 conv over the RoI feature reshaped (N, C*7*7, 1, 1) (C-major,
  as torch's flatten): the weight (1024, C*49, 1, 1) is reshaped to our Linear's (1024, C*49).
- FPN: `P{n}_lateral` -> neck.lateral_convs.{n - lowest level}, `P{n}_conv` -> neck.output_convs.{...}
  (index 0 = the lowest level: P2 for Faster / Mask / Cascade, P3 for RetinaNet), `P6_conv` /
  `P7_conv` -> neck.p6_conv / neck.p7_conv.
- Cascade: `bbox_*_1st` / `_2nd` / `_3rd` -> roi_heads.stages.{0,1,2}.
- Mask: `mask_fcn_conv{i}` -> roi_heads.mask_head.convs.{i-1}, `mask_up0` -> deconv,
  `mask_fcn_logit` -> logits.
- RetinaNet: `cls_conv{i}` / `bbox_conv{i}` -> head.cls_subnet / head.box_subnet .convs.{i-1},
  `cls_pred` / `bbox_pred` -> .pred: channels anchor-major, a * 80 + c and a * 4 + k (builder's
  reshape (0, A, C, -1)), as our head's view(n, A, C, h, w).
- Knowledge-distilled students: the test-time network is the plain student; training-only arrays
  (`student_hint*`, teacher arrays) are skipped with a note.
Not mapped (no config of ours, or no counterpart): FCOS (`shared_conv*`, `offset_*`, GroupNorm),
the dual-head (`bbox_cls_fc*`, `bbox_reg_block*`).
- C5-red (Cascade): `backbone_reduce_weight` (ReduceNeck's X.convrelu, no bias) -> neck.reduce.weight,
  our bias set to zero.
- Cascade's 2fc heads have biases in SimpleDet (`bbox_fc1_<stage>_bias`): our cascade configs must
  build them (MLPHeadConfig(fc_bias=True)), or conversion stops at the first bias.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import mxnet_name_map
from simpledet.modeling.backbones.resnet_v2 import mxnet_name_map_v2

_STAGE_SUFFIX = {"1st": 0, "2nd": 1, "3rd": 2}
_SKIP = (re.compile(r"^anchor_stride\d+$"), re.compile(r"^student_hint"), re.compile(r"^teacher_"))
_NO_BIAS = ("offset_conv.bias", "neck.reduce.bias")
_BACKBONE_PREFIXES = ("backbone.", "backbone.body.", "roi_heads.box_head.")


@dataclass(frozen=True)
class Rule:
    """Where one SimpleDet array goes: our key and the layout change (see `_TRANSFORMS`)."""

    key: str
    kind: str = "same"  # same | fc | rpn_cls | bbox_delta


@dataclass
class ConversionReport:
    state: dict[str, np.ndarray]
    origin: dict[str, str]  # our key -> SimpleDet name
    skipped: dict[str, str] = field(default_factory=dict)  # SimpleDet name -> why
    initialised: dict[str, str] = field(default_factory=dict)  # our key -> what was placed
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.state)} arrays placed"
        if self.skipped:
            text += f", {len(self.skipped)} skipped ({', '.join(list(self.skipped)[:4])}" + \
                (", ...)" if len(self.skipped) > 4 else ")")
        if self.initialised:
            text += f", {len(self.initialised)} set to zero ({', '.join(list(self.initialised)[:3])})"
        return text + "".join(f"\n  note: {n}" for n in self.notes)


# ---- layout transforms: SimpleDet array -> ours, and (for tests) our shape -> SimpleDet's ----

def _fc(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.reshape(shape) if a.size == int(np.prod(shape)) else a


def _rpn_cls(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = a.shape[0]
    if n != 2 * shape[0]:
        return a
    return a[n // 2:] - a[: n // 2]


def _bbox_delta(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.shape[0] == 8 and shape[0] == 4:  # class-agnostic: (background, foreground) x 4
        a = a[4:8]
    return _fc(a, shape)


_TRANSFORMS: dict[str, Callable[[np.ndarray, tuple[int, ...]], np.ndarray]] = {
    "same": lambda a, shape: a, "fc": _fc, "rpn_cls": _rpn_cls, "bbox_delta": _bbox_delta}


def simpledet_shape(name: str, rule: Rule, ours: tuple[int, ...]) -> tuple[int, ...]:
    """The shape SimpleDet's layout gives `name` when ours is `ours` (the inverse of the rule)."""
    if rule.kind == "rpn_cls":
        return (2 * ours[0],) + tuple(ours[1:])
    if rule.kind == "bbox_delta" and ours[0] == 4:
        ours = (8,) + tuple(ours[1:])
    # bbox_fc1 / bbox_fc2 of symbol/builder.py's 2fc head are 1x1 convs; the rest are X.fc (2-d)
    if re.match(r"^bbox_fc[12]_weight$", name) and len(ours) == 2:
        return tuple(ours) + (1, 1)
    return tuple(ours)


# ---- names ----

def _head_prefix(stage: str | None) -> str:
    return "roi_heads." if stage is None else f"roi_heads.stages.{_STAGE_SUFFIX[stage]}."


def resolve_name(name: str, keys: Mapping[str, object]) -> Rule | str | None:
    """SimpleDet name -> Rule, a str (the reason it is skipped), or None (unmapped)."""
    for pattern in _SKIP:
        if pattern.match(name):
            return ("precomputed anchors: recomputed by our anchor generator" if name.startswith("anchor")
                    else "training-only (distillation), absent at test time")
    m = re.match(r"^(.*)_(weight|bias|gamma|beta|moving_mean|moving_var)$", name)
    if m is None:
        return None
    base, suffix = m.groups()
    param = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_var": "running_var"}.get(suffix, suffix)

    def rule(key: str, kind: str = "same") -> Rule | None:
        return Rule(key, kind) if key in keys else None

    # FPN neck
    m = re.match(r"^P(\d)_(lateral|conv)$", base)
    if m:
        level, what = int(m.group(1)), m.group(2)
        if what == "conv" and level >= 6:
            return rule(f"neck.p{level}_conv.{param}")
        n_lat = sum(1 for k in keys if re.match(r"^neck\.lateral_convs\.\d+\.weight$", k))
        idx = level - (6 - n_lat)
        return rule(f"neck.{'lateral_convs' if what == 'lateral' else 'output_convs'}.{idx}.{param}")
    # C5-red neck (symbol/builder.py ReduceNeck: X.convrelu "backbone_reduce", no bias)
    if base == "backbone_reduce":
        return rule(f"neck.reduce.{param}")
    # RPN
    if base in ("rpn_conv", "rpn_conv_3x3"):
        return rule(f"rpn.head.conv.{param}")
    if base in ("rpn_conv_cls", "rpn_cls_logit"):
        return rule(f"rpn.head.objectness.{param}", "rpn_cls")
    if base in ("rpn_conv_bbox", "rpn_bbox_delta"):
        return rule(f"rpn.head.box_deltas.{param}")
    # R-CNN box head (cascade stages by suffix)
    m = re.match(r"^bbox_(fc1|fc2|cls_logit|reg_delta)(?:_(1st|2nd|3rd))?$", base)
    if m:
        layer, stage = m.groups()
        prefix = _head_prefix(stage)
        if layer in ("fc1", "fc2"):
            return rule(f"{prefix}box_head.fcs.{int(layer[2]) - 1}.{param}", "fc")
        if layer == "cls_logit":
            return rule(f"{prefix}box_predictor.cls_score.{param}", "fc")
        return rule(f"{prefix}box_predictor.bbox_pred.{param}", "bbox_delta")
    # Mask head
    m = re.match(r"^mask_fcn_conv(\d+)$", base)
    if m:
        return rule(f"roi_heads.mask_head.convs.{int(m.group(1)) - 1}.{param}")
    if base == "mask_up0":
        return rule(f"roi_heads.mask_head.deconv.{param}")
    if base == "mask_fcn_logit":
        return rule(f"roi_heads.mask_head.logits.{param}")
    # RetinaNet head
    m = re.match(r"^(cls|bbox)_(conv(\d+)|pred)$", base)
    if m:
        sub = "cls_subnet" if m.group(1) == "cls" else "box_subnet"
        layer = f"convs.{int(m.group(3)) - 1}" if m.group(3) else "pred"
        return rule(f"head.{sub}.{layer}.{param}")
    # backbone (and the C5 head's stage-4 units)
    v2 = any(k.endswith("final_bn.weight") for k in keys)
    try:
        ours = (mxnet_name_map_v2 if v2 else mxnet_name_map)(name)
    except KeyError:
        return None
    for prefix in _BACKBONE_PREFIXES:
        if prefix + ours in keys:
            return Rule(prefix + ours)
    return None


def convert_arrays(arrays: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]],
                   source: str = "<arrays>") -> ConversionReport:
    """SimpleDet's arrays (bare names, no arg:/aux:) -> our state (numpy) for a model whose
    state_dict shapes are `shapes`. Fails (UserError) on the first unmapped, mis-shaped or missing."""
    report = ConversionReport(state={}, origin={})
    for name, array in arrays.items():
        rule = resolve_name(name, shapes)
        if isinstance(rule, str):
            report.skipped[name] = rule
            continue
        if rule is None:
            raise UserError(f"{source}: array {name!r} {tuple(array.shape)} has no counterpart in this "
                            f"config's model (is the config the one the checkpoint was trained with?)")
        want = tuple(shapes[rule.key])
        out = _TRANSFORMS[rule.kind](np.asarray(array), want)
        if tuple(out.shape) != want:
            raise UserError(f"{source}: array {name!r} has shape {tuple(array.shape)}, which does not fit "
                            f"{rule.key} {want} (expected {simpledet_shape(name, rule, want)})")
        if rule.key in report.state:
            raise UserError(f"{source}: arrays {report.origin[rule.key]!r} and {name!r} both map to {rule.key}")
        report.state[rule.key] = out
        report.origin[rule.key] = name
    for key, shape in shapes.items():
        if key in report.state:
            continue
        if key.endswith(_NO_BIAS) and key[:-len("bias")] + "weight" in report.state:
            # SimpleDet's DCN offset conv and C5-red reduce conv have no bias: zero is the same function
            report.state[key] = np.zeros(tuple(shape), np.float32)
            report.initialised[key] = "zero (SimpleDet's conv has no bias)"
            continue
        if key.endswith("num_batches_tracked"):
            continue
        raise UserError(f"{source}: no array for our parameter {key} {tuple(shape)}")
    if any(k.startswith("backbone.body.") for k in report.state):
        report.notes.append("TridentNet: one shared copy of the backbone weights serves every branch")
    if any(v.startswith("training-only") for v in report.skipped.values()):
        report.notes.append("distillation arrays (student_hint / teacher) are training-only: skipped")
    return report


def convert_simpledet_checkpoint(src_params: str | Path, config_path: str | Path, dst: str | Path,
                                 overrides=()) -> str:
    """Convert SimpleDet's `src_params` into weights for our config `config_path`, written to
    `dst` (safetensors + meta). Returns a one-line summary of what was placed and skipped."""
    from simpledet.config import load_config, to_dict
    from simpledet.engine.checkpoint import save_weights
    from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes

    loaded = read_ndarray_file(src_params)
    raw = loaded.arrays if hasattr(loaded, "arrays") else loaded
    if not isinstance(raw, Mapping):
        raise UserError(f"{src_params}: an unnamed array list, not a SimpleDet checkpoint")
    arrays = split_prefixes(raw, str(src_params))
    cfg = load_config(config_path, overrides)
    model = cfg.model.build()
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    report = convert_arrays(arrays, shapes, str(src_params))
    new_state = {k: torch.from_numpy(np.ascontiguousarray(v)).to(state[k].dtype)
                 for k, v in report.state.items()}
    missing, unexpected = model.load_state_dict(new_state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise UserError(f"{src_params}: not loadable into {config_path}: missing {missing[:1]}, "
                        f"unexpected {unexpected[:1]}")
    save_weights(model, dst, {"iteration": 0, "config": to_dict(cfg), "config_path": str(config_path),
                              "converted_from": f"simpledet:{src_params}"})
    return f"{src_params} -> {dst}: " + report.summary()
