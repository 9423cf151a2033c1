"""Typed configs: plain-Python config files, `key.sub=value` overrides, JSON round trip.

A config file is Python that assigns `config = Config(...)`, built from the dataclasses that sit
next to each part (ResNetConfig next to ResNet, ...). A config can start from another one with
`load_config(path)` and change fields in view. Every field is typed, so an override is parsed to
the field's type and a misspelt key fails at once with the nearest valid key named.
"""

import ast
import dataclasses
import difflib
import importlib
import json
import runpy
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simpledet.data.rand_resize_crop import RandResizeCropConfig
from simpledet.data.scale_jitter import ScaleJitterConfig
from simpledet.engine.distill import DistillConfig
from simpledet.engine.qat import QATConfig
from simpledet.errors import UserError
from simpledet.files import atomic_write_text
from simpledet.modeling.detectors.detector import DetectorConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig

# Config classes renamed since configs were first saved with checkpoints: saved name -> current name
RENAMED_CLASSES = {
    "simpledet.modeling.detectors.tridentnet:TridentSettings": "simpledet.modeling.detectors.tridentnet:TridentConfig",
}


@dataclass
class DatasetConfig:
    """One split of a dataset. format "coco": `ann_file` is the annotation JSON and `image_dir`
    the folder its file_names are relative to. Other formats read their own layout from
    `ann_file` (see simpledet/data/datasets.py) and pick the split by `split`."""

    ann_file: str = ""
    image_dir: str = ""
    format: str = "coco"
    split: str = ""
    # more sets of the same format read into this split: (ann_file, image_dir) pairs for COCO,
    # (ann_file, split) for VOC and YOLO; SimpleDet's image_set tuples (train2017 + val2017,
    # VOC 2007 + 2012 trainval)
    extra_sets: tuple[tuple[str, str], ...] = ()


# COCO 2017 where the zoo's configs expect it: an annotation file and its image folder
COCO_TRAIN2017 = ("data/coco/annotations/instances_train2017.json", "data/coco/train2017")
COCO_VAL2017 = ("data/coco/annotations/instances_val2017.json", "data/coco/val2017")
COCO_TESTDEV2017 = ("data/coco/annotations/image_info_test-dev2017.json", "data/coco/test2017")


@dataclass
class DataConfig:
    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig = field(default_factory=DatasetConfig)
    num_workers: int = 2
    # SimpleDet's flip: horizontally mirrored copies appended to the training list
    flip: bool = True
    eval_batch_size: int = 1
    # False: model labels are the category ids themselves (torchvision's 91-class COCO layout)
    contiguous_labels: bool = True
    # large-scale jitter of the training images (SimpleDet's NAS-FPN configs); None: off
    scale_jitter: ScaleJitterConfig | None = None
    # SimpleDet's multi-scale random resize + crop of the training images (data/rand_resize_crop.py); None: off
    rand_resize_crop: RandResizeCropConfig | None = None


def coco2017(**options: Any) -> "DataConfig":
    """DataConfig for COCO train2017 / val2017 (COCO_TRAIN2017, COCO_VAL2017), with `options`."""
    return DataConfig(train=DatasetConfig(*COCO_TRAIN2017), val=DatasetConfig(*COCO_VAL2017), **options)


@dataclass
class TrainConfig:
    """Optimizer and schedule. `lr` is the learning rate for `lr_reference_batch` images per step;
    the actual rate is scaled linearly with the real total batch (Goyal et al.'s linear scaling
    rule): SimpleDet's 0.02 for 16 images becomes 0.0025 on one GPU with 2 images."""

    max_iter: int = 90000
    batch_size: int = 2  # images per process (per GPU)
    # "sgd" (SimpleDet's: momentum, weight decay) or "adamw" (decoupled weight decay, `betas`;
    # for backbones trained that way, such as ConvNeXt or Swin)
    optimizer: str = "sgd"
    lr: float = 0.02
    lr_reference_batch: int = 16
    momentum: float = 0.9  # SGD
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    weight_decay: float = 1e-4
    # the weight decay of the norm layers' scale and shift (BN, SyncBN, GN); None: weight_decay.
    # SimpleDet's normalizer with wd_mult 0 (its NAS-FPN 640 baseline and TD-BU configs): 0.0
    norm_weight_decay: float | None = None
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3
    steps: tuple[int, ...] = (60000, 80000)
    gamma: float = 0.1
    clip_grad_norm: float | None = None
    # mixed precision (the zoo's _fp16 configs): autocast to amp_dtype, fp32 master weights.
    # "float16" (GPU only; a CPU trains in fp32) uses dynamic loss scaling, saved in checkpoints;
    # "bfloat16" (GPU or CPU) needs none.
    amp: bool = False
    amp_dtype: str = "float16"
    # NHWC weights and activations: faster convolutions on the CPU's oneDNN and on GPUs' tensor
    # cores (docs/NOTES.md). False gives torchvision's NCHW kernels, bit for bit (configs/torchvision/)
    channels_last: bool = True
    # let cuDNN time its convolution algorithms for each new input shape (GPU; MXNet's
    # autotune, on by default in SimpleDet): the first step at each padded size is slower
    cudnn_benchmark: bool = True
    # the optimizer's kernels: "fused" (one kernel for all parameters, on devices that have it,
    # else foreach), "foreach" (a few batched kernels) or "for-loop" (one update per parameter)
    optimizer_impl: str = "fused"
    compile_backbone: bool = False  # torch.compile the backbone (GPU; the first steps compile)
    # capture the backbone, neck and dense head's forward and backward as CUDA graphs, one per
    # padded input shape, up to cuda_graph_shapes of them (other shapes run eagerly): the host
    # launches two graphs instead of ~1,000 kernels. GPU only; pair it with model.input.fixed_canvas.
    # "auto": on for CUDA training of a model a capture supports, off otherwise (the CPU: silently)
    cuda_graphs: bool | str = "auto"
    cuda_graph_shapes: int = 4
    # with cuda_graphs, the R-CNN stages too, where the device waits for the host after the RPN's
    # NMS: their matching and sampling (padded candidates: a few captures a run), and the FPN
    # models' 2MLP box head with its losses (512 RoIs an image)
    cuda_graph_heads: bool = True
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2
    log_every: int = 20
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    # fine-tuning: start from a detector checkpoint (a path, or torchvision:ENUM / simpledet:NAME).
    # Tensors whose name and shape match are loaded, the rest (another number of classes) keep their
    # initialisation; applied after model.backbone.pretrained, and not again when a run resumes
    init_from: str = ""
    # micro-batches of batch_size per optimizer step: the linear scaling rule sees
    # batch_size x processes x accumulate; max_iter, steps and every *_every count optimizer steps
    accumulate: int = 1
    # evaluate data.val every eval_every iterations and at the end (0: never): the 12 COCO stats go
    # to metrics.jsonl, the weights that scored best by best_metric (AP, AP50, ..., ARl; an RPN's
    # AR@1000, ...; CrowdHuman's AP or MR, lower the better) to model_best.safetensors; patience
    # stops the run after that many evaluations without improvement (0: never)
    eval_every: int = 0
    best_metric: str = "AP"
    patience: int = 0
    # an exponential moving average of the weights (0: off), its decay warmed up as YOLOX's:
    # ema_decay x (1 - exp(-updates / 2000)). With it on, every weights file a run writes holds
    # the average, and evaluation during training scores it
    ema_decay: float = 0.0
    tensorboard: bool = True  # event files under OUT/tensorboard: losses, learning rate, img/s, evaluations


@dataclass
class TestConfig:
    """Test-time augmentation (off by default): `scales` are short sides to run at (empty: the
    model's own), `flip` adds mirrored runs; detections are merged by per-class NMS or soft-NMS."""

    scales: tuple[int, ...] = ()
    max_size: int | None = None
    flip: bool = False
    nms_thresh: float = 0.5
    nms_method: str = "nms"  # "nms", "soft_linear", "soft_gaussian"
    detections_per_img: int = 100
    # inference in lower precision (eval, predict): autocast to amp_dtype; boxes and scores are
    # decoded in fp32 either way. "float16" needs a GPU; "bfloat16" runs on a GPU or the CPU.
    amp: bool = False
    amp_dtype: str = "float16"
    channels_last: bool = True  # as train.channels_last, for eval and predict


@dataclass
class Config:
    model: DetectorConfig = field(default_factory=FasterRCNNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    distill: DistillConfig | None = None  # FitNet distillation from a teacher (configs/kd/)
    qat: QATConfig | None = None  # INT8 quantisation-aware training (configs/int8/; engine/qat.py)


# ---------------------------------------------------------------- loading and overrides

def load_config(path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """Runs a config file, takes its `config` variable, applies `key.sub=value` overrides."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    if path.suffix == ".json":
        try:
            cfg = from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError, ImportError, AttributeError) as e:
            raise UserError(f"{path}: not a valid saved config ({e})") from None
    else:
        try:
            namespace = runpy.run_path(str(path))
        except UserError:
            raise
        except Exception as e:  # the file is the user's code: report where it failed
            raise UserError(f"{path}: error while running the config: {type(e).__name__}: {e}") from None
        cfg = namespace.get("config")
        if not isinstance(cfg, Config):
            raise UserError(f"{path}: must define `config = Config(...)` (simpledet.config.Config)")
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def all_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(obj):
        name = prefix + f.name
        value = getattr(obj, f.name)
        keys.extend(all_keys(value, name + ".") if dataclasses.is_dataclass(value) else [name])
    return keys


def apply_override(cfg: Config, item: str) -> None:
    if "=" not in item:
        raise UserError(f"override {item!r} must look like key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    node: Any = cfg
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
        if part not in names:
            nearest = difflib.get_close_matches(key, all_keys(cfg), n=1, cutoff=0.0)
            hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
            raise UserError(f"unknown config key {key!r}{hint}")
        if depth == len(parts) - 1:
            hint_type = typing.get_type_hints(type(node))[part]
            try:
                value = parse_value(raw, hint_type)
            except (ValueError, SyntaxError) as e:
                raise UserError(f"config key {key!r}: cannot read {raw!r} as {_type_name(hint_type)} ({e})") from None
            setattr(node, part, value)
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise UserError(f"config key {'.'.join(parts[:depth + 1])!r} is a value, not a section")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def parse_value(raw: str, tp: Any) -> Any:
    """Parses a command-line string into type `tp` (int, float, str, bool, tuples, Optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if type(None) in options and raw.strip() in ("None", "none", "null"):
            return None
        last_error: Exception = ValueError("no matching type")
        for option in options:
            if option is type(None):
                continue
            try:
                return parse_value(raw, option)
            except (ValueError, SyntaxError) as e:
                last_error = e
        raise last_error
    if tp is str:
        return raw
    if tp is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        return int(raw)
    if tp is float:
        return float(raw)
    if origin is tuple:
        value = ast.literal_eval(raw)
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return coerce(value, tp)
    return ast.literal_eval(raw)


def coerce(value: Any, tp: Any) -> Any:
    """Turns JSON-ish values (lists) back into the typed form (tuples) of `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        return coerce(value, options[0]) if len(options) == 1 else value
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in value)
        if args:
            if len(args) != len(value):
                raise ValueError(f"expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a) for v, a in zip(value, args))
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ValueError(f"expected {tp.__name__}, got {value!r}")
    return value


# ---------------------------------------------------------------- JSON round trip

def to_dict(obj: Any) -> Any:
    """Nested dicts with each dataclass's type recorded, so from_dict rebuilds the same classes."""
    if dataclasses.is_dataclass(obj):
        out = {"_type": f"{type(obj).__module__}:{type(obj).__qualname__}"}
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(data: dict) -> Any:
    """The config to_dict saved. Classes renamed since are found by their new name, and a class
    whose layout changed upgrades the saved fields (its `upgrade_saved` classmethod)."""
    name = RENAMED_CLASSES.get(data["_type"], data["_type"])
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith("simpledet."):
        raise ValueError(f"refusing to build {data['_type']}: not a simpledet config class")
    cls = getattr(importlib.import_module(module_name), qualname)
    upgrade = getattr(cls, "upgrade_saved", None)
    if upgrade is not None:
        data = upgrade(data)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        nested = isinstance(value, dict) and "_type" in value
        kwargs[f.name] = from_dict(value) if nested else coerce(value, hints[f.name])
    return cls(**kwargs)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(to_dict(cfg), indent=2) + "\n")
