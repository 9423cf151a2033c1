"""SEPC (SimpleDet models/sepc): the neck and head compute what MXNet computed with SimpleDet's own
graph, the integrated BN's statistics span every level, any input size works, the configs are
SimpleDet's rows, bad settings are refused, and the quick-start model trains through the CLI.

tests/fixtures/mxnet_made/sepc_{full,pconv}: SimpleDet's RetinaNetNeckWithBNWithSEPC and
RetinaNetHeadWithBNWithSEPC at 16 channels with 2 PConvs, random weights, run by MXNet 1.9.1 in
inference and in training mode (tools/mxnet_sepc_fixtures.py). Their .params go through the SimpleDet
checkpoint converter's name rules into our neck and head."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from simpledet import build_model, load_config
from simpledet.cli import main
from simpledet.errors import UserError
from simpledet.modeling.detectors.sepc import set_batch_norm
from simpledet.modeling.heads.sepc_head import SEPCHeadConfig
from simpledet.modeling.layers.deform_conv import DeformConv2d
from simpledet.modeling.layers.pyramid import norm_across_levels
from simpledet.modeling.necks.sepc import SEPCNeckConfig
from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes
from simpledet.weights.simpledet_checkpoint import convert_arrays

from .conftest import REPO
from .helpers import shapes_overrides

FIXTURES = REPO / "tests" / "fixtures" / "mxnet_made"
QUICKSTART = REPO / "configs" / "quickstart" / "retina_sepc_r18_shapes.py"
STRIDES = (8, 16, 32, 64, 128)
# max |ours - MXNet| / max |MXNet| per output: float32 rounding is ~1e-6 here
TOLERANCE = 1e-4
BROKEN = 1e-3  # what a real mistake gives at least


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


def _reference(case: str) -> dict:
    with np.load(FIXTURES / f"{case}.npz") as f:
        ref = {k: f[k] for k in f.files}
    ref["meta"] = json.loads(str(ref["meta"]))
    return ref


def _neck_and_head(meta: dict, **changes) -> nn.ModuleDict:
    """Our SEPC neck and head as the fixture's SimpleDet settings (16 channels, 2 classes), keyed
    `neck.` / `head.` as in a detector, so the converter's rules apply."""
    sepc = meta["sepc"]
    ibn = "bn" if sepc["ibn"] else None
    neck = SEPCNeckConfig(out_channels=256 // meta["div"], fpn_norm="bn", pconv_num=sepc["pconv_num"],
                          pconv_deform=sepc["pconv_deform"], integrated_norm=ibn,
                          start_level=changes.get("start_level", sepc["start_level"]))
    head = SEPCHeadConfig(num_convs=0, branch_deform=sepc["lcconv_deform"], integrated_norm=ibn,
                          start_level=changes.get("start_level", sepc["start_level"]))
    model = nn.ModuleDict({"neck": neck.build({"c3": 8, "c4": 16, "c5": 32}),
                           "head": head.build(256 // meta["div"], meta["num_class"] - 1)})
    set_batch_norm(model, meta["bn_eps"], 0.003)
    return model


def _load(case: str, **changes) -> tuple[nn.ModuleDict, dict]:
    ref = _reference(case)
    model = _neck_and_head(ref["meta"], **changes)
    arrays = split_prefixes(read_ndarray_file(FIXTURES / f"{case}-0000.params"))
    state = model.state_dict()
    report = convert_arrays(arrays, {k: tuple(v.shape) for k, v in state.items()}, case)
    assert not report.skipped and not report.initialised
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in report.state.items()},
                          strict=False)
    return model, ref


def _errors(model: nn.ModuleDict, ref: dict, mode: str) -> dict[str, float]:
    """Ours against MXNet's (N, A*K, H, W) outputs, brought to our (N, H*W*A, K) layout."""
    model.train(mode == "train")
    features = {f"c{i}": torch.from_numpy(ref[f"c{i}"]) for i in (3, 4, 5)}
    with torch.no_grad():
        cls, box = model["head"](model["neck"](features))
    errors = {}
    for kind, ours_levels in (("cls", cls), ("bbox", box)):
        for s, ours in zip(STRIDES, ours_levels):
            theirs = torch.from_numpy(ref[f"{mode}_{kind}_s{s}"])
            n, _, h, w = theirs.shape
            theirs = theirs.view(n, 9, -1, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, ours.shape[-1])
            assert ours.shape == theirs.shape, (kind, s, ours.shape, theirs.shape)
            errors[f"{kind}_s{s}"] = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    return errors


def test_fixtures_are_what_the_generator_says():
    for case in ("sepc_full", "sepc_pconv"):
        meta = _reference(case)["meta"]
        assert meta["case"] == case and meta["mxnet"] == "1.9.1" and meta["div"] == 16
        assert (FIXTURES / f"{case}-0000.params").stat().st_size < 300_000
        assert (FIXTURES / f"{case}.npz").stat().st_size < 300_000
    full = _reference("sepc_full")["meta"]
    assert full["sepc"] == {"pconv_num": 2, "start_level": 1, "pconv_deform": True, "ibn": True, "lcconv_deform": True}
    # the deformable samples really move (about a pixel), so the offsets are exercised
    assert 0.3 < min(full["mean_abs_offset"].values()) and max(full["mean_abs_offset"].values()) < 2


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("case", ["sepc_full", "sepc_pconv"])
def test_neck_and_head_compute_what_mxnet_computed(case, mode):
    """eval: BN with moving statistics; train: every BN by its batch statistics, the iBNs' over all
    five levels of both images at once, as MXNet's BatchNorm on SimpleDet's concatenated levels."""
    model, ref = _load(case)
    errors = _errors(model, ref, mode)
    assert max(errors.values()) < TOLERANCE, errors


class _PerLevel(nn.Module):
    """The mistake SEPC's iBN avoids: given the joined (N, C, 1, sum HW) tensor by
    norm_across_levels, normalises each level's slice by that slice's own batch statistics."""

    def __init__(self, norm: nn.BatchNorm2d, sizes: list[int]) -> None:
        super().__init__()
        self.norm = norm
        self.sizes = sizes

    def forward(self, joined: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.norm(part) for part in joined.split(self.sizes, dim=-1)], dim=-1)


def test_a_mistake_is_seen():
    """Deformable on P3 too (start_level 0), or each level normalised on its own in training: both
    move the outputs far outside the tolerance."""
    model, ref = _load("sepc_full", start_level=0)
    assert max(_errors(model, ref, "eval").values()) > BROKEN
    model, ref = _load("sepc_full")
    integrated = [m for m in model.modules() if isinstance(getattr(m, "norm", None), nn.BatchNorm2d)]
    assert len(integrated) == 4  # 2 PConvs, the 2 head branches
    for module in integrated:
        module.norm = _PerLevel(module.norm, [9 * 12, 5 * 6, 3 * 3, 2 * 2, 1 * 1])  # the fixture's P3-P7
    assert max(_errors(model, ref, "train").values()) > BROKEN


def test_norm_across_levels_by_hand():
    """In training the batch statistics are one mean and (biased) variance per channel over every
    position of every level of every image, computed here in float64 numpy."""
    g = torch.Generator().manual_seed(0)
    levels = [torch.randn(2, 3, h, w, generator=g) * (1 + i) + i for i, (h, w) in enumerate([(5, 7), (3, 4), (1, 2)])]
    bn = nn.BatchNorm2d(3, eps=1e-4, momentum=0.003).train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    out = norm_across_levels(bn, levels)
    flat = np.concatenate([x.numpy().transpose(1, 0, 2, 3).reshape(3, -1) for x in levels], axis=1).astype(np.float64)
    mean, var = flat.mean(1), flat.var(1)
    for x, y in zip(levels, out):
        assert y.shape == x.shape
        expected = (x.numpy() - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-4)
        expected = expected * np.array([0.5, 1.0, 2.0]).reshape(1, 3, 1, 1) + \
            np.array([0.1, -0.2, 0.3]).reshape(1, 3, 1, 1)
        np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    # running statistics: 0.997 old + 0.003 batch (the variance unbiased, as torch and MXNet keep it)
    n = flat.shape[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.003 * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.997 + 0.003 * var * n / (n - 1), rtol=1e-5)


def test_any_input_size():
    """Levels of any size (ceil-halved, as ResNet strides give them) go through PConvs and iBN: no
    padded canvas is assumed, unlike SimpleDet's fixed split sizes."""
    torch.manual_seed(0)
    neck = SEPCNeckConfig(out_channels=8, fpn_norm="bn", pconv_num=2, integrated_norm="bn").build(
        {"c3": 4, "c4": 4, "c5": 4}).eval()
    for h, w in [(13, 17), (8, 8), (25, 42)]:
        sizes = [(h, w)]
        for _ in range(2):
            sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
        features = {f"c{i + 3}": torch.randn(1, 4, *s) for i, s in enumerate(sizes)}
        with torch.no_grad():
            out = neck(features)
        expected = sizes + [(-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2))]
        expected.append((-(-expected[-1][0] // 2), -(-expected[-1][1] // 2)))
        assert [tuple(x.shape[-2:]) for x in out.values()] == expected
        assert all(torch.isfinite(x).all() for x in out.values())


# SimpleDet's config/sepc/*.py SEPCParam: (pconv_num, pconv_deform, ibn, lcconv_deform); None: no SEPC
ROWS = {"retina_r50v1b_fpn_1x": None, "retina_r50v1b_fpn_pconv_1x": (4, False, False, False),
        "retina_r50v1b_fpn_pconv_ibn_1x": (4, False, True, False),
        "retina_r50v1b_fpn_sepclite_1x": (4, False, True, True), "retina_r50v1b_fpn_sepc_1x": (4, True, True, True)}


def test_configs_are_simpledets_rows():
    # the folder's baseline: resnet_v1b's RetinaNet head, with BN trained in the backbone and after the FPN
    baseline = load_config(REPO / "configs" / "sepc" / "retina_r50v1b_fpn_1x.py").model
    reference = load_config(REPO / "configs" / "resnet_v1b" / "retina_r50v1b_fpn_1x.py").model
    assert baseline.head == reference.head and baseline.input.min_size == reference.input.min_size
    assert reference.backbone.norm == "frozen_bn" and reference.neck.p6p7_from == "c5"
    for name, row in ROWS.items():
        cfg = load_config(REPO / "configs" / "sepc" / f"{name}.py")
        model, train = cfg.model, cfg.train
        assert model.neck.fpn_norm == "syncbn" and model.backbone.norm == "syncbn" and model.bn_eps == 1e-4
        assert (train.batch_size, train.lr, train.lr_reference_batch, train.max_iter, train.steps) == \
            (4, 0.02, 32, 43974, (30000, 40000))
        head = model.head
        assert (head.pre_nms_top_n, head.score_thresh, head.nms_thresh, head.detections_per_img) == \
            (1000, 0.05, 0.5, 100)
        if row is None:
            assert model.neck.pconv_num == 0 and not isinstance(head, SEPCHeadConfig) and head.num_convs == 4
            continue
        pconv_num, pconv_deform, ibn, lcconv_deform = row
        assert isinstance(head, SEPCHeadConfig) and head.num_convs == 0
        assert (model.neck.pconv_num, model.neck.pconv_deform, model.head.branch_deform) == \
            (pconv_num, pconv_deform, lcconv_deform)
        assert model.neck.integrated_norm == model.head.integrated_norm == ("syncbn" if ibn else None)
        assert model.neck.start_level == head.start_level == 1


@pytest.mark.parametrize("override, message", [
    ("model.neck.integrated_norm=ibn", "model.neck.integrated_norm must be one of"),
    ("model.head.integrated_norm=layer", "model.head.integrated_norm must be one of"),
    ("model.neck.start_level=9", "model.neck.start_level must be between 0 and 5"),
    ("model.head.start_level=-1", "model.head.start_level must be between 0 and 5"),
    ("model.neck.pconv_num=-2", "model.neck.pconv_num must be >= 0"),
    ("model.bn_momentum=2", "model.bn_momentum in"),
])
def test_bad_settings_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        build_model(load_config(QUICKSTART, [override]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir):
    out = tmp_path_factory.mktemp("sepc") / "run"
    iters = 30
    # one PConv instead of the quick start's two: the same parts, half the deformable convs
    overrides = shapes_overrides(shapes_dir) + ["model.neck.pconv_num=1",
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.warmup_iters=5", f"train.checkpoint_every={iters}"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *overrides]) == 0
    return out, overrides


def test_quickstart_trains_and_predicts(trained):
    out, overrides = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses))
    # falling: the later half below the start
    assert sum(losses[len(losses) // 2:]) / (len(losses) - len(losses) // 2) < losses[0], losses
    from simpledet.engine.checkpoint import load_weights

    model = build_model(load_config(QUICKSTART, overrides))
    load_weights(model, out / "model_final.safetensors")
    model.eval()
    with torch.no_grad():
        detections = model([torch.rand(3, 128, 128), torch.rand(3, 97, 141)])
    for det, (h, w) in zip(detections, [(128, 128), (97, 141)]):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) <= 100
        assert torch.isfinite(det["boxes"]).all() and (det["scores"] >= 0.05).all()
        assert ((det["labels"] >= 1) & (det["labels"] <= 4)).all()
        if len(det["boxes"]):
            assert det["boxes"][:, 2].max() <= w + 1e-3 and det["boxes"][:, 3].max() <= h + 1e-3
    # the deformable convs trained their offsets away from zero
    offsets = [m.offset_conv.weight for m in model.modules() if isinstance(m, DeformConv2d)]
    assert offsets and any(w.abs().max() > 0 for w in offsets)
