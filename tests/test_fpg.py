"""Feature Pyramid Grids and stacked PAFPN (SimpleDet's models/FPG) inside Faster R-CNN.

The necks are checked against MXNet running SimpleDet's own builder (tests/fixtures/mxnet_made/
fpg_*, made by tools/mxnet_fpg_fixtures.py), loaded through the SimpleDet checkpoint converter's
name rules; the normalised 2fc box head against a numpy reference; the configs against
SimpleDet's config/FPG files; and a small FPG detector trains on the shapes set."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model, load_config
from simpledet.cli import main
from simpledet.config import from_dict, to_dict
from simpledet.errors import UserError
from simpledet.modeling.heads.box_head_bn import NormMLPHead
from simpledet.modeling.heads.conv_box_head import FixedAffineNormMLPHeadConfig
from simpledet.modeling.necks.fpg import FPG, FPGConfig
from simpledet.modeling.necks.pafpn import PAFPN, PAFPNConfig, crop_to, upsample2
from simpledet.modeling.norm import SyncBatchNorm2d
from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import shapes_overrides

FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"
CONFIGS = REPO / "configs" / "FPG"
QUICKSTART = REPO / "configs" / "quickstart" / "faster_fpg_r18_shapes.py"
# the fixtures' NeckParam (tools/mxnet_fpg_fixtures.py NECKS): SyncBN at test time = BN in eval mode
NECKS = {"fpg_grid": FPGConfig(channels=8, num_stages=3, norm="bn"),
         "fpg_pafpn": PAFPNConfig(channels=12, num_stages=3, norm="bn")}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


def _fixture(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as f:
        ref = {k: f[k] for k in f.files}
    ref["meta"] = json.loads(str(ref["meta"]))
    return ref


def _neck_from_mxnet(name: str, ref: dict) -> nn.Module:
    """Our neck with MXNet's parameters, placed by the converter's rules (under `neck.`, as in a detector)."""
    holder = nn.Module()
    holder.neck = NECKS[name].build({f"c{i}": int(ref[f"c{i}"].shape[1]) for i in range(2, 6)})
    shapes = {k: tuple(v.shape) for k, v in holder.state_dict().items() if not k.endswith("num_batches_tracked")}
    arrays = split_prefixes(read_ndarray_file(FIXTURES / f"{name}-0000.params"))
    report = convert_arrays(arrays, shapes, name)  # every array placed, every parameter filled
    holder.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in report.state.items()},
                           strict=False)
    return holder.neck.eval()


@pytest.mark.parametrize("name", sorted(NECKS))
def test_neck_computes_what_mxnet_computed(name):
    ref = _fixture(name)
    assert ref["meta"]["built_by"].startswith("SimpleDet models/FPG/builder.py")
    assert ref["meta"]["mxnet"].startswith("1.") and ref["meta"]["neck_param"]["num_stage"] == 3
    assert (FIXTURES / f"{name}-0000.params").stat().st_size < 300_000
    neck = _neck_from_mxnet(name, ref)
    with torch.no_grad():
        out = neck({f"c{i}": torch.from_numpy(ref[f"c{i}"]) for i in range(2, 6)})
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    for level, got in out.items():
        expected = ref[level]
        assert got.shape == expected.shape, level
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5 * scale, err_msg=level)
    # the BN statistics matter: with identity BNs the result is far off
    for m in neck.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    with torch.no_grad():
        off = neck({f"c{i}": torch.from_numpy(ref[f"c{i}"]) for i in range(2, 6)})["p2"]
    assert not np.allclose(off.numpy(), ref["p2"], rtol=1e-2, atol=1e-2)


def test_upsampling_crops_like_mxnet():
    """UpSampling(nearest, x2) then slice_like: rows 0,0,1,1,2 of a 3-row map for a 5-row level."""
    x = torch.arange(6.0).reshape(1, 1, 3, 2)
    like = torch.zeros(1, 1, 5, 3)
    expected = torch.tensor([[0, 0, 1], [0, 0, 1], [2, 2, 3], [2, 2, 3], [4, 4, 5]], dtype=torch.float32)
    assert torch.equal(crop_to(upsample2(x), like)[0, 0], expected)


def test_grid_pathways_and_names():
    """Which pathways exist per level (SimpleDet's grid: no same_up / across_up into P2, no across_down
    into P6), and that the grid's last column is what the neck returns."""
    neck = FPGConfig(channels=8, num_stages=2, norm="bn").build({"c2": 4, "c3": 4, "c4": 4, "c5": 4})
    stage = neck.stages[0]
    assert list(stage.same_up) == list(stage.across_up) == ["p2", "p3", "p4", "p5"]  # each feeds the level above
    assert list(stage.across_down) == ["p3", "p4", "p5", "p6"]  # each feeds the level below
    assert list(stage.across_same) == list(stage.across_skip) == ["p2", "p3", "p4", "p5", "p6"]
    assert stage.same_up["p2"].conv.stride == (2, 2) and stage.across_same["p2"].conv.kernel_size == (1, 1)
    assert isinstance(stage.same_up["p2"].norm, nn.BatchNorm2d)
    assert neck.output_shape() == {f"p{i}": 8 for i in range(2, 7)}


def test_configs_are_simpledets():
    """config/FPG/*: FPG 6 x 128 / 256 with SyncBN in the neck only; PAFPN 3 x 256 / 384 with SyncBN
    everywhere and the 2fc head normalised; the RPN's conv is 256 wide in all four."""
    names = sorted(p.name for p in CONFIGS.glob("*.py"))
    assert names == ["faster_r50v1b_fpg6@128_syncbn_1x.py", "faster_r50v1b_fpg6@256_syncbn_1x.py",
                     "faster_r50v1b_pafpn3@256_syncbn_1x.py", "faster_r50v1b_pafpn3@384_syncbn_1x.py"]
    expected = {"fpg6@128": (FPGConfig, 128, 6), "fpg6@256": (FPGConfig, 256, 6),
                "pafpn3@256": (PAFPNConfig, 256, 3), "pafpn3@384": (PAFPNConfig, 384, 3)}
    for name in names:
        cfg = load_config(CONFIGS / name)
        kind, channels, stages = expected[name.split("_")[2]]
        neck = cfg.model.neck
        assert type(neck) is kind and (neck.channels, neck.num_stages, neck.lateral_kernel) == (channels, stages, 1)
        assert neck.norm == "syncbn" and cfg.model.rpn.conv_channels == 256
        assert cfg.model.rpn.in_features == ("p2", "p3", "p4", "p5", "p6")
        assert cfg.model.roi_heads.in_features == ("p2", "p3", "p4", "p5")
        pafpn = kind is PAFPNConfig
        assert cfg.model.backbone.norm == ("syncbn" if pafpn else "frozen_bn")
        assert isinstance(cfg.model.roi_heads.box_head, FixedAffineNormMLPHeadConfig) == pafpn
        assert (cfg.train.lr, cfg.train.lr_reference_batch, cfg.train.steps, cfg.train.warmup_iters) == \
            (0.02, 16, (60000, 80000), 500)
        assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg  # as saved beside a checkpoint


def test_pafpn_keeps_norm_scale_and_shift_fixed():
    """SimpleDet's PAFPN configs fix every "gamma" and "beta": statistics trained, affine not; FPG's
    neck trains both."""
    pafpn = PAFPNConfig(channels=8, num_stages=1, norm="syncbn").build({"c2": 4, "c3": 4, "c4": 4, "c5": 4})
    fpg = FPGConfig(channels=8, num_stages=1, norm="syncbn").build({"c2": 4, "c3": 4, "c4": 4, "c5": 4})
    assert isinstance(pafpn.stages[0].top_down["p2"].norm, SyncBatchNorm2d)
    norms = [m for m in pafpn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 8 and not any(p.requires_grad for m in norms for p in m.parameters())
    assert all(p.requires_grad for m in fpg.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    pafpn.train()
    features = {f"c{i}": torch.randn(2, 4, 2 ** (6 - i), 2 ** (6 - i)) for i in range(2, 6)}
    pafpn(features)
    assert not torch.equal(norms[0].running_mean, torch.zeros(8))


def test_normalised_box_head_is_fc_bn_relu():
    """fc (no bias) -> BN over the RoIs -> ReLU, twice: in training the batch's statistics, at test
    the running ones (numpy reference)."""
    torch.manual_seed(0)
    head = FixedAffineNormMLPHeadConfig(fc_dim=6, num_fc=2, norm="bn").build(in_channels=2, resolution=3)
    assert isinstance(head, NormMLPHead) and head.output_size == 6
    assert not any(p.requires_grad for n in head.norms for p in n.parameters())
    x = torch.randn(10, 2, 3, 3)
    w1, w2 = (fc.weight.detach().numpy().astype(np.float64) for fc in head.fcs)

    def reference(batch_stats: bool) -> np.ndarray:
        h = x.numpy().reshape(10, -1).astype(np.float64)
        for w, norm in zip((w1, w2), head.norms):
            h = h @ w.T
            if batch_stats:
                mean, var = h.mean(0), h.var(0)
            else:
                mean, var = norm.running_mean.numpy(), norm.running_var.numpy()
            h = np.maximum((h - mean) / np.sqrt(var + 1e-5), 0)
        return h

    head.train()
    np.testing.assert_allclose(head(x).detach().numpy(), reference(True), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for norm in head.norms:
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    head.eval()
    np.testing.assert_allclose(head(x).detach().numpy(), reference(False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("override, message", [
    ("model.neck.norm=frozen_bn", "norm must be one of bn, syncbn, gn"),
    ("model.neck.num_stages=0", "num_stages must be positive"),
    ("model.neck.lateral_kernel=2", "lateral_kernel must be odd"),
])
def test_bad_neck_settings_are_named(override, message):
    cfg = load_config(QUICKSTART, [override])
    with pytest.raises(UserError, match=rf"model\.neck: {message}"):
        cfg.model.build()


def test_bad_box_head_norm_is_named():
    cfg = load_config(CONFIGS / "faster_r50v1b_pafpn3@256_syncbn_1x.py", ["model.roi_heads.box_head.norm=frozen_bn"])
    with pytest.raises(UserError, match=r"model\.roi_heads\.box_head\.norm must be one of"):
        cfg.model.roi_heads.box_head.build(8, 2)


@pytest.fixture(scope="module")
def trained(shapes_dir, tmp_path_factory):
    """A 32-channel, 2-stage FPG quick-start model trained 30 steps through the CLI."""
    out = tmp_path_factory.mktemp("fpg") / "run"
    iters = 30
    overrides = shapes_overrides(shapes_dir) + [
        "model.neck.channels=32", f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02",
        "train.lr_reference_batch=4", "train.clip_grad_norm=10", "train.warmup_iters=5",
        f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_fpg_detector_trains_on_shapes(trained):
    out, overrides = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert len(losses) >= 5 and all(np.isfinite(losses))
    # falling: the later half below the start (30 steps of batch 4 are noisy step to step)
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    from simpledet.engine.checkpoint import load_weights

    model = build_model(load_config(QUICKSTART, overrides))
    assert isinstance(model.neck, FPG) and model.neck.out_channels == 32
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    with torch.no_grad():
        detections = model([torch.rand(3, 128, 128), torch.rand(3, 96, 140)])
    for det, (h, w) in zip(detections, ((128, 128), (96, 140))):
        boxes = det["boxes"]
        assert boxes.shape[1] == 4 and len(boxes) == len(det["scores"]) == len(det["labels"]) <= 100
        assert torch.isfinite(boxes).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
        assert (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()
        assert ((det["labels"] >= 1) & (det["labels"] <= 4)).all()


def test_neck_runs_channels_last_and_on_meta():
    """The trainer's channels_last layout gives the same features; `simpledet zoo` builds on meta."""
    torch.manual_seed(0)
    neck = PAFPNConfig(channels=8, num_stages=2, norm="bn").build({"c2": 4, "c3": 6, "c4": 8, "c5": 10}).eval()
    grid = FPGConfig(channels=8, num_stages=2, norm="bn").build({"c2": 4, "c3": 6, "c4": 8, "c5": 10}).eval()
    features = {f"c{i}": torch.randn(1, 2 * i, 2 ** (7 - i), 3 * 2 ** (5 - i)) for i in range(2, 6)}
    for module in (neck, grid):
        with torch.no_grad():
            plain = module(features)
            module.to(memory_format=torch.channels_last)
            last = module({k: v.to(memory_format=torch.channels_last) for k, v in features.items()})
        for level in plain:
            torch.testing.assert_close(last[level], plain[level], rtol=1e-5, atol=1e-5)
    for name, kind in (("faster_r50v1b_fpg6@128_syncbn_1x.py", FPG), ("faster_r50v1b_pafpn3@384_syncbn_1x.py", PAFPN)):
        with torch.device("meta"):
            model = load_config(CONFIGS / name).model.build()
        assert isinstance(model.neck, kind)


def test_at_sign_config_names_work_from_the_cli(tmp_path, capsys):
    """Config names with '@' (SimpleDet's) through the CLI: a bad override is exit 2, not a traceback."""
    config = str(CONFIGS / "faster_r50v1b_fpg6@128_syncbn_1x.py")
    assert main(["train", config, "--out", str(tmp_path / "x"), "model.neck.chanels=3"]) == 2
    assert "model.neck.channels" in capsys.readouterr().err


@pytest.mark.parametrize("amp", [False, True])
def test_graphed_dense_step_equals_the_eager_step(monkeypatch, amp):
    """train.cuda_graphs replaces the dense step (backbone, grid, RPN head); with the capture stood
    in on the CPU (tests/graph_standin.py) a training step gives the plain model's losses and
    gradients bit for bit, in fp32 and under bf16 autocast. SyncBN (the zoo configs) is refused."""
    import copy

    from simpledet.accel.cuda_graphs import enable_cuda_graphs
    from tests.graph_standin import FakeGraphs, assert_graphed_step_equals_eager

    FakeGraphs(monkeypatch)
    torch.manual_seed(0)
    plain = build_model(load_config(QUICKSTART, ["model.neck.channels=16"]), load_pretrained=False).train()
    graphed = copy.deepcopy(plain)
    assert enable_cuda_graphs(graphed, 2, torch.device("cuda"))
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[5.0, 6, 60, 70], [30, 20, 90, 80]]), "labels": torch.tensor([1, 2])},
               {"boxes": torch.tensor([[40.0, 10, 80, 50]]), "labels": torch.tensor([4])}]
    assert_graphed_step_equals_eager(plain, graphed, images, targets, amp)
    with torch.device("meta"):
        synced = load_config(CONFIGS / "faster_r50v1b_fpg6@128_syncbn_1x.py").model.build()
    with pytest.raises(UserError, match=r"SyncBatchNorm2d at stages\.0\.same_up\.p2\.norm"):
        enable_cuda_graphs(synced, 2, torch.device("cuda"))
