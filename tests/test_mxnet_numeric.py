"""Our backbones compute what MXNet computed with SimpleDet's graphs and the same weights.

tests/fixtures/mxnet_made holds, per family, a Module checkpoint (NAME-0000.params) that MXNet 1.9.1
wrote for SimpleDet's own backbone graph (mxnext's builders, SimpleDet's DCN builder) at reduced
width (channels / 16, ResNeXt and DCN / 32; depth 50), with random weights and non-trivial frozen-BN
statistics, and MXNet's c2..c5 on one image (NAME.npz). tools/make_mxnet_fixtures.py remakes them.
Each file goes through the real loading path (weights.pretrained.load_pretrained_weights) into our backbone, built
with the matching reduced config, and the outputs must agree to float32 rounding.

The second half checks that the comparison has teeth: a wrong stride placement, BN eps, bn_data
gamma, DCN offset layout or mask position each moves the outputs far outside the tolerance."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.layers.deform_conv import DeformConv2d
from simpledet.modeling.norm import FrozenBatchNorm2d

from .helpers import load_into

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mxnet_made"
STAGES = ("c2", "c3", "c4", "c5")
# max |ours - MXNet| / max |MXNet|, per output: float32 rounding, 1e-6 at c2 growing to 1e-5 (DCN: 4e-5) at c5
TOLERANCE = 1e-4
# what a real mistake gives at least (the mildest in MISTAKES below reaches 0.27)
BROKEN = 1e-3

# our config for each fixture: SimpleDet's structure with base_width 64 / div (and ResNeXt's
# width_per_group, which counts channels per group at 64 planes, x div)
FAMILIES = {
    # mxnext resnet_v1 "msra": stride in conv1 (1x1)
    "resnet_v1_50": ResNetConfig(depth=50, variant="v1", base_width=4),
    # mxnext resnet_v1b: stride in conv2 (3x3)
    "resnet_v1b_50": ResNetConfig(depth=50, variant="v1b", base_width=4),
    # mxnext resnet_v2 "mxnet", c4c5 endpoint: bn_data, stage 4 at stride 1 dilation 2, c5 after bn1 + relu
    "resnet_v2_50": ResNetV2Config(depth=50, base_width=4, data_bn=True, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)),
    # mxnext resnext "mxnet", 64 groups at full width (64x4d): 2 groups of 4 channels at / 32; stride in conv2
    "resnext_50_64x4d": ResNetConfig(depth=50, variant="v1b", base_width=2, groups=2, width_per_group=128,
                                     data_bn=True),
    # SimpleDet models/dcn/builder.py at / 32: DCNv1, 4 deformable groups, in all of stage 2 (its strided
    # first unit included) and the last 3 units of stage 3
    "dcn_v1b_50": ResNetConfig(depth=50, variant="v1b", base_width=2, dcn_blocks=(0, 4, 3, 0)),
    # the same unit with DCNv2's mask (offset conv: 72 offsets then 36 mask logits, with bias), last 3 of stage 3
    "mdcn_v1b_50": ResNetConfig(depth=50, variant="v1b", base_width=2, dcn_blocks=(0, 0, 3, 0), dcn_modulated=True),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


def _reference(family: str) -> dict:
    with np.load(FIXTURES / f"{family}.npz") as f:
        ref = {k: f[k] for k in f.files}
    ref["meta"] = json.loads(str(ref["meta"]))
    # SimpleDet's NormParam, in float32 as the generator computed it
    ref["input"] = (ref["image"].astype(np.float32) - ref["mean"].reshape(1, 3, 1, 1)) / ref["std"].reshape(1, 3, 1, 1)
    return ref


def _load(family: str, fuse: bool = True, **changes):
    model = replace(FAMILIES[family], fuse_frozen_bn=fuse, **changes).build().eval()
    report = load_into(model, FIXTURES / f"{family}-0000.params")
    return model, report


def _errors(model, ref: dict) -> dict[str, float]:
    with torch.no_grad():
        out = model(torch.from_numpy(ref["input"]))
    errors = {}
    for stage in STAGES:
        expected = torch.from_numpy(ref[stage])
        assert out[stage].shape == expected.shape, (stage, tuple(out[stage].shape), tuple(expected.shape))
        errors[stage] = ((out[stage] - expected).abs().max() / expected.abs().max()).item()
    return errors


def test_fixtures_are_what_the_generator_says():
    for family in FAMILIES:
        ref = _reference(family)
        meta = ref["meta"]
        assert meta["family"] == family and meta["mxnet"] == "1.9.1"
        assert (FIXTURES / f"{family}-0000.params").stat().st_size < 700_000
        assert all(list(ref[s].shape) == meta["outputs"][s] for s in STAGES)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused_bn", "unfused_bn"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_backbone_computes_what_mxnet_computed(family, fuse):
    ref = _reference(family)
    model, report = _load(family, fuse)
    # every parameter and statistic came from the file; nothing in it went unused
    assert not report.skipped, report.skipped
    expected_initialised = [k for k in model.state_dict() if k.endswith("offset_conv.bias")] \
        if family == "dcn_v1b_50" else []  # SimpleDet's offset convs have no bias: ours stays at zero
    assert sorted(report.initialised) == sorted(expected_initialised)
    if FAMILIES[family].data_bn:
        assert torch.equal(model.data_bn.weight, torch.ones(3))  # bn_data: fix_gamma, ones placed
    errors = _errors(model, ref)
    assert max(errors.values()) < TOLERANCE, errors


class _Given(torch.nn.Module):
    """An offset conv that returns fixed offsets (and mask logits)."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out


def test_single_deformable_convs_are_mxnets():
    """DCNv1 (mx.sym.contrib.DeformableConvolution) and DCNv2 (ModulatedDeformableConvolution) with
    strides, dilations, groups and deformable groups, offsets reaching past the border: each agrees
    with its own MXNet operator, and the other operator's border rule would not."""
    with np.load(FIXTURES / "dcn_ops.npz") as f:
        d = {k: f[k] for k in f.files}
    cases = sorted({int(k.split("_")[0]) for k in d if k.endswith("_case")})
    assert len(cases) == 5
    kinds = set()
    for i in cases:
        modulated, cin, cout, dg, groups, stride, dil = (int(v) for v in d[f"{i}_case"])
        layer = DeformConv2d(cin, cout, 3, stride, dil, dil, groups, dg, modulated=bool(modulated))
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(d[f"{i}_weight"]))
        out = d[f"{i}_offset"] if not modulated else np.concatenate([d[f"{i}_offset"], d[f"{i}_mask_logits"]], 1)
        layer.offset_conv = _Given(torch.from_numpy(out))
        expected = torch.from_numpy(d[f"{i}_y"])
        errors = []
        for border in (layer.mxnet_v1_border, not layer.mxnet_v1_border):
            layer.mxnet_v1_border = border
            with torch.no_grad():
                y = layer(torch.from_numpy(d[f"{i}_x"]))
            errors.append(((y - expected).abs().max() / expected.abs().max()).item())
        assert errors[0] < 1e-5 and errors[1] > 1e-2, (d[f"{i}_case"], errors)
        kinds.add((modulated, stride > 1, dil > 1, groups > 1))
    assert {k[0] for k in kinds} == {0, 1} and all(any(k[j] for k in kinds) for j in (1, 2, 3))


def _permute_offsets(model, swap_xy: bool = False, mask_first: bool = False) -> None:
    """Rearrange every DCN offset conv's output channels as a wrong layout would read them."""
    for m in model.modules():
        if not isinstance(m, DeformConv2d):
            continue
        conv, n = m.offset_conv, m.num_offsets
        order = torch.arange(conv.out_channels)
        if swap_xy:  # (y, x) pairs read as (x, y)
            order[:n] = order[:n].reshape(-1, 2).flip(1).reshape(-1)
        if mask_first:  # mask logits first, then offsets
            order = torch.cat([order[n:], order[:n]])
        with torch.no_grad():
            conv.weight.copy_(conv.weight[order])
            if conv.bias is not None:
                conv.bias.copy_(conv.bias[order])


def _set_border(model, mxnet_v1: bool) -> None:
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            m.mxnet_v1_border = mxnet_v1


def _set_eps(model, eps: float) -> None:
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = eps


def _data_bn_gamma_from_file(model) -> None:
    from simpledet.weights.mxnet_format import read_ndarray_file

    arrays = read_ndarray_file(FIXTURES / "resnet_v2_50-0000.params")
    with torch.no_grad():
        model.data_bn.weight.copy_(torch.from_numpy(arrays["arg:bn_data_gamma"]))


# (fixture, config changes, what to do to the loaded model): each a mistake the comparison must see
MISTAKES = {
    "v1_file_as_v1b": ("resnet_v1_50", {"variant": "v1b"}, None),
    "v1b_file_as_v1": ("resnet_v1b_50", {"variant": "v1"}, None),
    "resnext_stride_in_1x1": ("resnext_50_64x4d", {"variant": "v1"}, None),
    "bn_eps_1e-4": ("resnet_v1b_50", {}, lambda m: _set_eps(m, 1e-4)),
    "bn_eps_0": ("resnet_v1_50", {}, lambda m: _set_eps(m, 0.0)),
    "bn_data_uses_stored_gamma": ("resnet_v2_50", {}, _data_bn_gamma_from_file),
    "v2_c5_undilated": ("resnet_v2_50", {"dilations": (1, 1, 1, 1)}, None),
    "dcn_offsets_xy_swapped": ("dcn_v1b_50", {}, lambda m: _permute_offsets(m, swap_xy=True)),
    "dcn_torchvision_border": ("dcn_v1b_50", {}, lambda m: _set_border(m, False)),
    "mdcn_mxnet_v1_border": ("mdcn_v1b_50", {}, lambda m: _set_border(m, True)),
    "dcn_one_deformable_group": ("dcn_v1b_50", {"dcn_deformable_groups": 1}, "loader_refuses"),
    "mdcn_offsets_xy_swapped": ("mdcn_v1b_50", {}, lambda m: _permute_offsets(m, swap_xy=True)),
    "mdcn_mask_first": ("mdcn_v1b_50", {}, lambda m: _permute_offsets(m, mask_first=True)),
    "mdcn_without_mask": ("mdcn_v1b_50", {}, "unmodulated"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_seen(mistake):
    family, changes, action = MISTAKES[mistake]
    ref = _reference(family)
    if action == "loader_refuses":
        # one deformable group: an offset conv of 18 channels, the file's has 72
        with pytest.raises(UserError, match="offset_conv"):
            _load(family, **changes)
        return
    model, _ = _load(family, **changes)
    if action == "unmodulated":  # the offsets alone: the mask logits ignored
        for m in model.modules():
            if isinstance(m, DeformConv2d):
                m.modulated = False
    elif action is not None:
        action(model)
    errors = _errors(model, ref)
    assert max(errors.values()) > BROKEN, errors
