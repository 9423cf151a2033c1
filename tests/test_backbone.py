import json
from pathlib import Path

import pytest
import torch

from simpledet.modeling.backbones.resnet import ResNetConfig, make_stage
from simpledet.modeling.norm import FrozenBatchNorm2d
from simpledet.weights.mxnet_names import mxnet_resnet_key

from .helpers import randomise_frozen_bn


def test_output_names_strides_and_channels():
    model = ResNetConfig(depth=50).build()
    feats = model(torch.rand(1, 3, 64, 96))
    assert list(feats) == ["c2", "c3", "c4", "c5"]
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in feats.values()] == [256, 512, 1024, 2048]
    assert model.output_shape() == {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}


def test_v1_and_v1b_put_the_stride_in_different_convs():
    v1, v1b = ResNetConfig(depth=50, variant="v1").build(), ResNetConfig(depth=50, variant="v1b").build()
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v1b.layer2[0].conv1.stride == (1, 1) and v1b.layer2[0].conv2.stride == (2, 2)


def test_freeze_at_two_freezes_stem_and_stage_one():
    model = ResNetConfig(depth=18, freeze_at=2).build()
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    # frozen BN holds buffers only: nothing to train
    assert not any(isinstance(m, FrozenBatchNorm2d) and list(m.parameters()) for m in model.modules())


def test_folded_frozen_bn_equals_separate_bn_forward_and_backward():
    torch.manual_seed(0)
    plain = ResNetConfig(depth=50, fuse_frozen_bn=False).build()
    randomise_frozen_bn(plain)
    fused = ResNetConfig(depth=50, fuse_frozen_bn=True).build()
    fused.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    a, b = plain(x), fused(x)
    for k in a:
        scale = float(a[k].abs().max())
        assert float((a[k] - b[k]).abs().max()) <= 1e-5 * scale, k
    sum(f.square().mean() for f in a.values()).backward()
    sum(f.square().mean() for f in b.values()).backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        if p.requires_grad:
            assert float((p.grad - q.grad).abs().max()) <= 1e-3 * float(p.grad.abs().max()), name


def test_trainable_bn_for_training_from_scratch():
    model = ResNetConfig(depth=18, norm="bn", freeze_at=0, base_width=16).build()
    assert isinstance(model.bn1, torch.nn.BatchNorm2d) and model.bn1.weight.requires_grad


# --- truncated backbones, reusable stages, dilation ---------------------------------------------

def test_truncated_backbone_builds_only_the_stages_it_returns():
    model = ResNetConfig(depth=50, out_features=("c4",), base_width=16).build()
    assert not hasattr(model, "layer4") and not any(k.startswith("layer4.") for k in model.state_dict())
    assert model.output_shape() == {"c4": 256} and model.stage_channels == {"c2": 64, "c3": 128, "c4": 256}
    feats = model(torch.rand(1, 3, 64, 64))
    assert list(feats) == ["c4"] and feats["c4"].shape == (1, 256, 4, 4)


def test_make_stage_is_the_backbones_stage():
    torch.manual_seed(0)
    model = ResNetConfig(depth=50, base_width=16, variant="v1", groups=2, width_per_group=32).build()
    randomise_frozen_bn(model)
    stage = make_stage(block="bottleneck", in_channels=256, width=128, num_blocks=3, stride=2, norm="frozen_bn",
                       variant="v1", groups=2, width_per_group=32, dilation=1, fuse_frozen_bn=True)
    full = {k[len("layer4."):]: v for k, v in model.state_dict().items() if k.startswith("layer4.")}
    assert set(stage.state_dict()) == set(full) and "0.downsample.0.weight" in full
    stage.load_state_dict(full)
    x = torch.rand(1, 256, 6, 6)
    torch.testing.assert_close(stage(x), model.layer4(x))


def test_dilated_stage_keeps_the_resolution():
    stage = make_stage(block="bottleneck", in_channels=64, width=16, num_blocks=2, stride=1, norm="frozen_bn",
                       variant="v1b", groups=1, width_per_group=64, dilation=2, fuse_frozen_bn=True)
    assert stage[0].conv2.dilation == (2, 2) and stage[0].conv2.padding == (2, 2)
    assert stage(torch.rand(1, 64, 9, 9)).shape == (1, 64, 9, 9)
    model = ResNetConfig(depth=50, base_width=16, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)).build()
    assert model(torch.rand(1, 3, 64, 64))["c5"].shape == (1, 512, 4, 4)


# --- SimpleDet (MXNet) parameter names ------------------------------------------------------------

BACKBONE_JSON = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "simpledet" / "backbones"
needs_json = pytest.mark.skipif(not BACKBONE_JSON.is_dir(), reason="../shared/fixtures is not beside the checkout")


def check_mxnet_names(json_name: str, build, name_map) -> None:
    """Every arg / aux of the SimpleDet model file maps to one of our state_dict keys, same shape."""
    spec = json.loads((BACKBONE_JSON / json_name).read_text())
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        state = build().state_dict()
    names = {**spec["arg"], **spec["aux"]}
    mapped = {name_map(n): shape for n, shape in names.items()}
    assert len(mapped) == len(names)  # one to one
    missing = sorted(k for k in mapped if k not in state)
    assert not missing, missing[:5]
    wrong = [(k, s, list(state[k].shape)) for k, s in mapped.items() if list(state[k].shape) != s]
    assert not wrong, wrong[:5]


@needs_json
@pytest.mark.parametrize("json_name, depth, variant", [
    ("resnet-v1-50.json", 50, "v1"), ("resnet-v1-101.json", 101, "v1"), ("resnet50_v1b.json", 50, "v1b"),
    ("resnet101_v1b.json", 101, "v1b"), ("resnet152_v1b.json", 152, "v1b")])
def test_mxnet_names_map_onto_resnet(json_name, depth, variant):
    check_mxnet_names(json_name, lambda: ResNetConfig(depth=depth, variant=variant).build(), mxnet_resnet_key)


def test_mxnet_name_map_examples():
    assert mxnet_resnet_key("conv0_weight") == "conv1.weight"
    assert mxnet_resnet_key("bn0_moving_var") == "bn1.running_var"
    assert mxnet_resnet_key("bn_data_gamma") == "data_bn.weight"
    assert mxnet_resnet_key("stage1_unit1_sc_bn_gamma") == "layer1.0.downsample.1.weight"
    assert mxnet_resnet_key("stage2_unit4_bn3_beta") == "layer2.3.bn3.bias"
    assert mxnet_resnet_key("stage3_unit23_conv2_offset_weight") == "layer3.22.conv2.offset_conv.weight"
    with pytest.raises(KeyError):
        mxnet_resnet_key("fc1_weight")
