"""NAS-FPN family (SimpleDet's models/NASFPN): the NAS-FPN and top-down / bottom-up necks, the FPN
and RetinaNet head with BN against MXNet running SimpleDet's own builders; the large-scale jitter
against hand-computed cases; training and inference of the quick-start config through the CLI."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model
from simpledet.cli import main
from simpledet.data.scale_jitter import KeyedBatches, ScaleJitter, ScaleJitterConfig, jitter_sample
from simpledet.errors import UserError
from simpledet.modeling.heads.retina_head_bn import RetinaHeadWithNormConfig
from simpledet.modeling.necks.nasfpn import NASFPNConfig
from simpledet.modeling.necks.retina_fpn_bn import RetinaFPNWithNormConfig
from simpledet.modeling.necks.tdbu import TDBUConfig
from simpledet.modeling.preprocess import InputConfig
from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import fit_shapes_images, shapes_overrides, small_config

FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"
QUICKSTART = REPO / "configs" / "quickstart" / "retina_nasfpn_r18_shapes.py"
C_CHANNELS = {"c3": 8, "c4": 12, "c5": 16}  # tools/mxnet_nasfpn_fixtures.py
STRIDES = (8, 16, 32, 64, 128)


def load_mxnet(part: str, **modules: nn.Module) -> tuple[nn.Module, dict]:
    """A holder of `modules` (neck=..., head=...) in eval mode, given MXNet's arrays through the
    converter's name rules (every array placed, every parameter filled), and the fixture's npz."""
    holder = nn.Module()
    for name, module in modules.items():
        setattr(holder, name, module)
    holder.eval()
    shapes = {k: tuple(v.shape) for k, v in holder.state_dict().items() if not k.endswith("num_batches_tracked")}
    arrays = split_prefixes(read_ndarray_file(FIXTURES / f"{part}-0000.params"))
    report = convert_arrays(arrays, shapes, part)
    assert set(report.origin.values()) == set(arrays) and set(report.state) == set(shapes)
    holder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in report.state.items()}, strict=False)
    with np.load(FIXTURES / f"{part}.npz") as f:
        data = {k: f[k] for k in f.files}
    return holder, data


def assert_close(ours: torch.Tensor, theirs: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max(), err_msg=what)


@pytest.mark.parametrize("part, neck", [
    ("nasfpn_neck", NASFPNConfig(num_stages=2, channels=8)),
    ("nasfpn_tdbu", TDBUConfig(num_stages=2, channels=8, pool_kernel=3)),
    ("nasfpn_tdbu_k2", TDBUConfig(num_stages=2, channels=8, pool_kernel=2)),
])
def test_neck_matches_mxnet(part, neck):
    holder, data = load_mxnet(part, neck=neck.build(C_CHANNELS))
    meta = json.loads(str(data["meta"]))
    assert meta["built_by"].startswith("SimpleDet models/") and meta["mxnet"].startswith("1.")
    with torch.no_grad():
        out = holder.neck({k: torch.from_numpy(data[k]) for k in C_CHANNELS})
    assert list(out) == ["p3", "p4", "p5", "p6", "p7"]
    for (name, x), stride in zip(out.items(), STRIDES):
        assert_close(x, data[f"stride{stride}"], f"{part} {name}")


def test_fpn_with_bn_and_head_with_per_level_bn_match_mxnet():
    neck = RetinaFPNWithNormConfig(out_channels=8).build(C_CHANNELS)
    head = RetinaHeadWithNormConfig(conv_channels=8).build(8, 3)
    holder, data = load_mxnet("nasfpn_retina", neck=neck, head=head)
    with torch.no_grad():
        features = holder.neck({k: torch.from_numpy(data[k]) for k in C_CHANNELS})
        cls, box = holder.head(features)
    for i, (name, x) in enumerate(features.items()):
        assert_close(x, data[f"neck_stride{STRIDES[i]}"], name)
    for ours, key, k in ((cls, "cls", 3), (box, "bbox", 4)):
        for level, stride in enumerate(STRIDES):
            theirs = data[f"{key}_stride{stride}"]  # (1, A*K, H, W), channel a*K + k
            n, _, h, w = theirs.shape
            theirs = theirs.reshape(n, 9, k, h, w).transpose(0, 3, 4, 1, 2).reshape(n, -1, k)
            assert_close(ours[level], theirs, f"{key} stride {stride}")


def test_fixtures_are_small():
    for path in FIXTURES.glob("nasfpn_*"):
        assert path.stat().st_size < 300_000, path


# ---- large-scale jitter ----

def ramp_image(height: int, width: int) -> torch.Tensor:
    """x / width in channel 0, y / height in channel 1: bilinear resizing keeps a ramp a ramp."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([xs / width, ys / height, torch.zeros_like(xs)])


def target(boxes):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.arange(1, len(boxes) + 1),
            "image_id": 7, "orig_size": (50, 100)}


def test_jitter_smaller_than_the_square_is_not_cropped():
    # 100 x 50 image, square 80, factor 1: longer side int(80) -> scale 0.8, 80 x 40, nothing to crop
    image, out = jitter_sample(ramp_image(50, 100), target([[10, 5, 60, 45]]), 80, 1.0, (0.9, 0.9))
    assert image.shape == (3, 40, 80) and out["orig_size"] == (40, 80)
    torch.testing.assert_close(out["boxes"], torch.tensor([[8.0, 4.0, 48.0, 36.0]]))
    # bilinear with half-pixel centres: output column j samples input column (j + 0.5) / 0.8 - 0.5
    j = torch.arange(5, 75)
    torch.testing.assert_close(image[0, 20, 5:75], ((j + 0.5) / 0.8 - 0.5) / 100)


def test_jitter_larger_than_the_square_is_cropped_and_boxes_outside_dropped():
    # factor 1.2: longer side int(96.0) = 96 -> scale 0.96, 96 x 48; 16 spare columns, draw 0.5 -> x offset 8
    boxes = [[10, 5, 60, 45], [0, 0, 5, 10], [90, 20, 100, 50]]
    image, out = jitter_sample(ramp_image(50, 100), target(boxes), 80, 1.2, (0.3, 0.5))
    assert image.shape == (3, 48, 80)
    # box 1: x 9.6..57.6 - 8, y 4.8..43.2; box 2 (x 0..4.8 - 8) is left of the window: dropped;
    # box 3: x 86.4..96 - 8 -> 78.4..88, clipped to the window's 80
    torch.testing.assert_close(out["boxes"], torch.tensor([[1.6, 4.8, 49.6, 43.2], [78.4, 19.2, 80.0, 48.0]]))
    assert out["labels"].tolist() == [1, 3] and out["image_id"] == 7
    j = torch.arange(2, 78)
    torch.testing.assert_close(image[0, 24, 2:78], ((j + 8 + 0.5) / 0.96 - 0.5) / 100)


class ListDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return ramp_image(50, 100) + index, target([[10, 5, 60, 45], [40, 10, 90, 40]])


def test_jitter_draws_are_keyed_and_resumable():
    batches = [[0, 1], [2, 0], [1, 2], [0, 2]]
    full = list(KeyedBatches(batches, seed=3, start_iter=0, rank=0))
    resumed = list(KeyedBatches(batches[2:], seed=3, start_iter=2, rank=0))
    assert resumed == full[2:]
    keys = [key for batch in full for _, key in batch]
    assert len(set(keys)) == len(keys)  # every sample of the stream its own draw
    other_rank = list(KeyedBatches(batches, seed=3, start_iter=0, rank=1))
    assert not {k for b in other_rank for _, k in b} & set(keys)

    dataset = ScaleJitter(ListDataset(), ScaleJitterConfig(size=64, scale_min=0.5, scale_max=1.5))
    a, b = dataset[(1, keys[0])], dataset[(1, keys[0])]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    sizes = {tuple(dataset[(1, k)][0].shape) for k in keys}
    assert len(sizes) > 1  # the scale varies from draw to draw
    for _, key in full[0]:
        image, t = dataset[(0, key)]
        assert image.shape[-1] <= 64 and image.shape[-2] <= 64
        assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all() and (t["boxes"][:, 2] <= image.shape[-1]).all()


def test_model_pads_jittered_images_without_resizing():
    pre = InputConfig(min_size=(128,), max_size=128, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pixel_scale=1.0,
                      size_divisible=128, fixed_canvas=True, train_resize=False).build().train()
    image = torch.rand(3, 90, 100)
    batch, sizes, targets = pre([image], [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]])}])
    assert batch.shape == (1, 3, 128, 128) and torch.equal(batch[0, :, :90, :100], image)
    assert batch[0, :, 90:].abs().sum() == 0
    assert torch.equal(targets[0]["boxes"], torch.tensor([[1.0, 2.0, 30.0, 40.0]]))
    pre.eval()  # evaluation resizes: the longer side to 128
    assert pre([image])[0].shape == (1, 3, 128, 128) and pre([image])[1].resized[0] == (115, 128)


@pytest.mark.parametrize("build, message", [
    (lambda: ScaleJitter(ListDataset(), ScaleJitterConfig(scale_min=1.3, scale_max=1.2)), "scale_min <= scale_max"),
    (lambda: ScaleJitter(ListDataset(), ScaleJitterConfig(size=0)), "data.scale_jitter.size"),
    (lambda: NASFPNConfig(num_stages=0).build(C_CHANNELS), "model.neck.num_stages"),
    (lambda: NASFPNConfig(norm="batchnorm").build(C_CHANNELS), "model.neck.norm"),
    (lambda: TDBUConfig(pool_kernel=4).build(C_CHANNELS), "model.neck.pool_kernel"),
    (lambda: RetinaFPNWithNormConfig(norm="ln").build(C_CHANNELS), "model.neck.norm"),
    (lambda: RetinaHeadWithNormConfig(norm="ln").build(8, 3), "model.head.norm"),
])
def test_bad_settings_are_named(build, message):
    with pytest.raises(UserError, match=message):
        build()


# ---- training ----

@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    out = tmp_path_factory.mktemp("nasfpn") / "run"
    iters = 30
    overrides = shapes_overrides(shapes_dir) + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr_reference_batch=4", "train.warmup_iters=5",
        f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out


def test_quickstart_trains_with_jitter(trained):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert len(losses) >= 4 and all(np.isfinite(losses))
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    saved = json.loads((trained / "config.json").read_text())
    assert saved["data"]["scale_jitter"]["size"] == 128  # the resolved config keeps the jitter


def test_trained_model_predicts(trained, shapes_dir):
    from simpledet.engine.checkpoint import load_weights

    model = build_model(small_config(shapes_dir, config=QUICKSTART))
    load_weights(model, trained / "model_final.safetensors")
    model.eval()
    with torch.no_grad():
        dets = model([torch.rand(3, 128, 128), torch.rand(3, 128, 160)])
    for det, width in zip(dets, (128, 160)):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) <= 100
        assert (det["scores"] > 0.05).all() and ((det["labels"] >= 1) & (det["labels"] <= 4)).all()
        if len(det["boxes"]):
            assert det["boxes"][:, 2].max() <= width + 1e-3 and det["boxes"][:, 3].max() <= 128 + 1e-3


# ---- opt-in: fits a few images ----

@pytest.mark.skipif(os.environ.get("SIMPLEDET_TEST_OVERFIT") != "1", reason="opt-in: SIMPLEDET_TEST_OVERFIT=1")
def test_quickstart_overfits_a_few_images(tmp_path: Path):
    eval_dir = fit_shapes_images(QUICKSTART, tmp_path, iters=300, clip_grad_norm=None)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["AP50"] >= 0.9, metrics
