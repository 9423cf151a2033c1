import pytest
import torch
import torch.nn.functional as F

from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config, make_stage_v2
from simpledet.weights.mxnet_names import mxnet_resnet_key

from .test_backbone import check_mxnet_names, needs_json, randomise_frozen_bn


@needs_json
@pytest.mark.parametrize("json_name, depth", [("resnet-50.json", 50), ("resnet-101.json", 101)])
def test_mxnet_names_map_onto_resnet_v2(json_name, depth):
    check_mxnet_names(json_name, ResNetV2Config(depth=depth).build, lambda name: mxnet_resnet_key(name, v2=True))


def test_mxnet_name_map_v2_examples():
    assert mxnet_resnet_key("bn_data_gamma", v2=True) == "data_bn.weight"
    assert mxnet_resnet_key("stage2_unit1_sc_weight", v2=True) == "layer2.0.downsample.weight"
    assert mxnet_resnet_key("stage4_unit3_bn1_moving_mean", v2=True) == "layer4.2.bn1.running_mean"
    assert mxnet_resnet_key("bn1_beta", v2=True) == "final_bn.bias"  # after stage 4 (the C5 head's)
    assert "final_bn.bias" in ResNetV2Config(depth=50, base_width=16).build().state_dict()


def test_outputs_and_truncation():
    model = ResNetV2Config(depth=50, base_width=16).build()
    feats = model(torch.rand(1, 3, 64, 96))
    assert list(feats) == ["c2", "c3", "c4", "c5"]
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    assert model.output_shape() == {"c2": 64, "c3": 128, "c4": 256, "c5": 512}
    assert feats["c5"].min() >= 0  # final BN + ReLU
    c4_only = ResNetV2Config(depth=50, out_features=("c4",), base_width=16).build()
    assert c4_only.final_bn is None and not hasattr(c4_only, "layer4")
    assert list(c4_only(torch.rand(1, 3, 64, 64))) == ["c4"]


def test_unit_is_mxnets_pre_activation_unit():
    """bn1 -> relu -> conv1 -> bn2 -> relu -> conv2 (stride) -> bn3 -> relu -> conv3, plus the
    shortcut conv applied to relu(bn1(x)) (mxnext resnet_v2.resnet_unit)."""
    torch.manual_seed(0)
    unit = make_stage_v2(in_channels=32, width=8, num_blocks=1, stride=2, norm="frozen_bn", dilation=1,
                         fuse_frozen_bn=False)[0]
    randomise_frozen_bn(unit)
    x = torch.randn(1, 32, 8, 8)
    act = F.relu(unit.bn1(x))
    out = F.relu(unit.bn2(F.conv2d(act, unit.conv1.weight)))
    out = F.relu(unit.bn3(F.conv2d(out, unit.conv2.weight, stride=2, padding=1)))
    expected = F.conv2d(out, unit.conv3.weight) + F.conv2d(act, unit.downsample.weight, stride=2)
    torch.testing.assert_close(unit(x), expected)


def test_folded_frozen_bn_equals_separate_bn():
    torch.manual_seed(0)
    plain = ResNetV2Config(depth=50, fuse_frozen_bn=False, base_width=16).build()
    randomise_frozen_bn(plain)
    fused = ResNetV2Config(depth=50, fuse_frozen_bn=True, base_width=16).build()
    fused.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    a, b = plain(x), fused(x)
    for k in a:
        assert float((a[k] - b[k]).detach().abs().max()) <= 1e-4 * float(a[k].detach().abs().max()), k
    a["c5"].square().mean().backward()
    b["c5"].square().mean().backward()
    p, q = plain.layer3[0].conv2.weight.grad, fused.layer3[0].conv2.weight.grad
    assert float((p - q).abs().max()) <= 1e-3 * float(p.abs().max())


def test_freeze_and_trainable_bn():
    model = ResNetV2Config(depth=50, norm="bn", freeze_at=2, base_width=16).build()
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters()) and model.final_bn.weight.requires_grad
