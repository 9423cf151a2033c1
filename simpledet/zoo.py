"""`simpledet zoo`: every config with SimpleDet's published figures beside our model's size.

Parameters and FLOPs are counted on the meta device (no memory, no arithmetic): the dense part
(backbone, neck, RPN or dense head) on one 800x1333 image padded as the model pads it (800x1344;
896x1408 for NAS-FPN's multiples of 128), and the per-RoI heads on as many RoIs as the model keeps
at test time (RPN proposals for box heads, the detections for the mask head). FLOPs count a
multiply-add as two.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from simpledet.config import load_config
from simpledet.published_results import SIMPLEDET_CONFIGS, ZOO, ZooRow

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ZooEntry:
    name: str  # config path relative to configs/, without .py
    reference: ZooRow | None
    params_m: float
    gflops: float | None


def _deform_conv_flops(input_shape, weight_shape, *args, out_shape, **kwargs) -> int:
    """torchvision's deform_conv2d as the convolution it is (2 FLOPs per multiply-add; the bilinear
    sampling of the offsets is not counted): FlopCounterMode knows no formula for it."""
    out_channels, in_per_group, kh, kw = weight_shape
    return 2 * math.prod(out_shape) * in_per_group * kh * kw


def _flop_counter() -> FlopCounterMode:
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    return FlopCounterMode(display=False, custom_mapping={torch.ops.torchvision.deform_conv2d:
                                                          _deform_conv_flops})


def _roi_flops(stages: list, num_rois: int, channels: int) -> float:
    """FLOPs of the per-RoI part of the R-CNN stages (box head + predictor of each; a cascade's
    earlier classifiers run again on the last stage's RoIs) and of a mask branch, on the number of
    RoIs the model keeps at test time."""
    total = 0.0
    for stage in stages:
        pooled = torch.empty(num_rois, channels, *stage.pooler.output_size, device="meta")
        with _flop_counter() as counter:
            stage.predict_pooled(pooled)
        total += counter.get_total_flops()
    if len(stages) > 1:
        total += sum(total / len(stages) for _ in stages[:-1])
    for stage in stages:
        if stage.mask_head is not None:  # on the detections
            pooled = torch.empty(stage.detections_per_img, channels, *stage.mask_pooler.output_size, device="meta")
            with _flop_counter() as counter:
                stage.mask_head(pooled)
            total += counter.get_total_flops()
    return total


def count_params_and_flops(cfg, height: int = 800, width: int = 1333) -> tuple[float, float | None]:
    with torch.device("meta"):
        model = cfg.model.build()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    pad = cfg.model.input.size_divisible  # as the model pads: 32, or 128 for NAS-FPN's pooled cells
    image = torch.empty(1, 3, -(-height // pad) * pad, -(-width // pad) * pad, device="meta")
    with _flop_counter() as counter:
        features, _ = model.dense_step(image)  # backbone, neck and the dense head's convolutions
    flops = counter.get_total_flops()
    stages = model.rcnn_stages()
    if stages:  # a two-stage detector: its dense head is an RPN
        feature = stages[0].pooler.featmap_names[0]
        flops += _roi_flops(stages, model.dense_head.post_nms_top_n[False], features[feature].shape[1])
    return params, flops / 1e9


def config_names(root: Path = CONFIG_ROOT) -> list[str]:
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.py"))


def collect(root: Path = CONFIG_ROOT) -> list[ZooEntry]:
    entries = []
    for name in config_names(root):
        cfg = load_config(root / f"{name}.py")
        params, gflops = count_params_and_flops(cfg)
        entries.append(ZooEntry(name, ZOO.get(name), params, gflops))
    return entries


def format_table(entries: list[ZooEntry], markdown: bool = False) -> str:
    header = ["config", "model", "backbone", "head", "schedule", "SimpleDet AP", "SimpleDet mem",
              "SimpleDet speed", "params (M)", "GFLOPs"]
    rows = []
    for e in entries:
        r = e.reference
        ap = "" if r is None else (f"{r.ap}" + (f" ({r.mask_ap})" if r.mask_ap is not None else "")
                                   + (f" [{r.note}]" if r.note else ""))
        rows.append([e.name, r.model if r else "-", r.backbone if r else "-", r.head if r else "-",
                     r.schedule if r else "-", ap or "-", (r.train_mem or "-") if r else "-",
                     (r.train_speed or "-") if r else "-", f"{e.params_m:.1f}",
                     f"{e.gflops:.0f}" if e.gflops is not None else "-"])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*row) for row in rows])


def missing_configs(root: Path = CONFIG_ROOT) -> list[str]:
    """SimpleDet's configs (its whole config/ tree) and zoo rows that have no config here."""
    have = set(config_names(root))
    return sorted(name for name in set(SIMPLEDET_CONFIGS) | set(ZOO) if name not in have)
