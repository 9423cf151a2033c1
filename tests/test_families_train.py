"""Every family not trained elsewhere trains on the shapes set: losses finite and falling, outputs
well formed. (Faster FPN, Cascade, Mask, RetinaNet and TridentNet have their own tests.)"""

import json

import pytest
import torch

from simpledet import build_model
from simpledet.cli import main

from .conftest import REPO
from .helpers import shapes_overrides, small_config

CASES = {
    "c4": (REPO / "configs/quickstart/faster_r18c4_shapes.py", []),
    # deformable convolutions live in bottlenecks: a slim ResNet-50
    "dcn": (REPO / "configs/quickstart/faster_r18_fpn_shapes.py",
            ["model.backbone.depth=50", "model.backbone.base_width=16", "model.backbone.dcn_blocks=(0,1,2,1)"]),
    "dcn_modulated": (REPO / "configs/quickstart/faster_r18_fpn_shapes.py",
                      ["model.backbone.depth=50", "model.backbone.base_width=16", "model.backbone.dcn_blocks=(0,0,1,1)",
                       "model.backbone.dcn_modulated=true"]),
    "resnet_v2": (REPO / "configs/quickstart/faster_r18_fpn_shapes.py", []),
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_family_trains_on_shapes(family, tmp_path, shapes_dir):
    config, extra = CASES[family]
    if family == "resnet_v2":  # a slim pre-activation ResNet-50 from scratch
        config = tmp_path / "v2.py"
        config.write_text(
            "from simpledet.config import load_config\n"
            "from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config\n"
            f"config = load_config({str(REPO / 'configs/quickstart/faster_r18_fpn_shapes.py')!r})\n"
            "config.model.backbone = ResNetV2Config(depth=50, norm='bn', freeze_at=0, base_width=16, data_bn=False)\n")
    out = tmp_path / "run"
    iters = 40
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=5", f"train.checkpoint_every={iters}", *extra]
    assert main(["train", str(config), "--out", str(out), *overrides]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(torch.isfinite(torch.tensor(losses)))
    # falling: the later half below the start (40 steps of batch 4 are noisy step to step)
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    model = build_model(small_config(shapes_dir, *extra, config=config))
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) <= 100
