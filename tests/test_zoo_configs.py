"""Every config in configs/ loads, and every model among them builds and runs one training step
and one inference pass at a small input size."""

import json
import re

import pytest
import torch

from simpledet import build_model, load_config
from simpledet.config import to_dict

from .conftest import REPO


def _natural(name: str) -> list:
    """r50 before r101, 1x before 2x: each structure is tested on its smallest config."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


CONFIGS = sorted((p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.py")), key=_natural)


def _structure(value):
    """A model config with every number blanked: configs that differ only in depth, widths,
    sizes or thresholds build the same structure of parts."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v) for v in value]
    return "#" if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _one_config_per_model() -> list[str]:
    """The first config of each distinct structure of parts (every config loads on the way; every
    one also builds on the meta device in tests/test_convert_simpledet.py): a 2x schedule, an fp16
    run, a distillation config or a deeper backbone trains the parts its first config steps."""
    first: dict[str, str] = {}
    for name in CONFIGS:
        cfg = load_config(REPO / name)
        first.setdefault(json.dumps([_structure(to_dict(cfg.model)), cfg.train.channels_last], sort_keys=True), name)
    return sorted(first.values())


MODELS = _one_config_per_model()


def test_configs_found():
    assert "configs/resnet_v1b/faster_r50v1b_fpn_1x.py" in CONFIGS and len(CONFIGS) >= 10
    assert "configs/resnet_v1b/faster_r50v1b_fpn_2x.py" not in MODELS and len(MODELS) >= 40  # 2x: the 1x model


def shrink_proposals(model_cfg) -> None:
    """Few proposals and RoIs: a C5 head on 1000 RoIs alone costs over a TFLOP."""
    rpn = getattr(model_cfg, "rpn", None)
    if rpn is not None:
        rpn.pre_nms_top_n_train = rpn.pre_nms_top_n_test = 200
        rpn.post_nms_top_n_train = rpn.post_nms_top_n_test = 32
    roi = getattr(model_cfg, "roi_heads", None)
    roi = getattr(roi, "stage", roi)  # a cascade: the stage config every stage is built from
    if roi is not None:
        roi.batch_size_per_image = 16


@pytest.mark.parametrize("name", MODELS)
def test_config_builds_trains_and_predicts(name):
    torch.manual_seed(0)
    cfg = load_config(REPO / name, ["model.input.min_size=(96,)", "model.input.max_size=128",
                                    "model.input.test_min_size=96", "model.input.test_max_size=128"])
    shrink_proposals(cfg.model)
    model = build_model(cfg)
    if cfg.train.channels_last:  # as the trainer runs it
        model.to(memory_format=torch.channels_last)
    model.train()
    images = [torch.rand(3, 100, 120), torch.rand(3, 120, 90)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5.0, 50.0, 40.0], [30.0, 30.0, 80.0, 110.0]]),
                "labels": torch.tensor([min(2, cfg.model.num_classes), 1])}]
    if cfg.model.predicts_masks:  # instance masks: the boxes, filled
        for t, img in zip(targets, images):
            t["masks"] = torch.zeros(len(t["boxes"]), *img.shape[-2:], dtype=torch.uint8)
            for m, (x1, y1, x2, y2) in zip(t["masks"], t["boxes"].int().tolist()):
                m[y1:y2, x1:x2] = 1
    losses = model(images, targets)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)

    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"])
        if len(det["boxes"]):
            assert det["boxes"][:, 2].max() <= img.shape[-1] + 1e-3 and det["boxes"][:, 3].max() <= img.shape[-2] + 1e-3


def test_simpledet_config_list_matches_its_manifests():
    """The list `simpledet zoo` checks against is SimpleDet's whole config tree: one MXNet-made
    manifest of SimpleDet's test symbol per config (tests/fixtures/simpledet_manifests)."""
    from simpledet.published_results import SIMPLEDET_CONFIGS, ZOO
    from simpledet.zoo import config_names, missing_configs

    manifests = REPO / "tests/fixtures/simpledet_manifests"
    assert len(SIMPLEDET_CONFIGS) == len(set(SIMPLEDET_CONFIGS)) == 115
    assert set(SIMPLEDET_CONFIGS) == {p.relative_to(manifests).with_suffix("").as_posix()
                                      for p in manifests.rglob("*.json")}
    assert set(ZOO) <= set(SIMPLEDET_CONFIGS)
    assert missing_configs() == sorted(set(SIMPLEDET_CONFIGS) - set(config_names()))


def test_zoo_counts_deformable_convolutions_as_convolutions():
    """FlopCounterMode has no formula for torchvision's deform_conv2d; the zoo's counter counts it
    as the convolution it is (2 x output elements x input channels per group x kernel area)."""
    from torchvision.ops import deform_conv2d

    from simpledet.zoo import _flop_counter

    x = torch.randn(1, 8, 10, 12, device="meta")
    weight = torch.randn(16, 4, 3, 3, device="meta")  # 2 groups
    offset = torch.zeros(1, 2 * 9, 10, 12, device="meta")
    with _flop_counter() as counter:
        deform_conv2d(x, offset, weight, padding=1)
    assert counter.get_total_flops() == 2 * (16 * 10 * 12) * 4 * 9
