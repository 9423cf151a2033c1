import pytest
import torch
import torch.nn.functional as F

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.layers import DeformConv2d
from simpledet.modeling.norm import FrozenBatchNorm2d

from .test_backbone import randomise_frozen_bn


def plain_conv(layer: DeformConv2d, x: torch.Tensor) -> torch.Tensor:
    groups = layer.offset_conv.in_channels // layer.weight.shape[1]
    return F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, groups)


def test_zero_offsets_give_the_plain_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 11)
    for stride, dilation, groups in ((1, 1, 1), (2, 1, 2), (1, 2, 1)):
        layer = DeformConv2d(8, 12, 3, stride, dilation, dilation, groups, deformable_groups=4)
        assert layer.offset_conv.out_channels == 72  # SimpleDet's conv2_offset: 2 * 9 * 4
        torch.testing.assert_close(layer(x), plain_conv(layer, x), rtol=1e-5, atol=1e-5)


def test_modulated_starts_at_half_and_unit_mask_gives_the_plain_convolution():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 7, 7)
    layer = DeformConv2d(8, 4, deformable_groups=2, modulated=True)
    assert layer.offset_conv.out_channels == 3 * 2 * 9
    torch.testing.assert_close(layer(x), 0.5 * plain_conv(layer, x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        layer.offset_conv.bias[layer.num_offsets:] = float("inf")  # sigmoid(inf) == 1 exactly
    torch.testing.assert_close(layer(x), plain_conv(layer, x), rtol=1e-5, atol=1e-5)


def test_offset_layout_is_y_then_x_per_kernel_tap():
    """Channel 2p moves tap p down, 2p+1 right (MXNet's DeformableConvolution uses the same layout)."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    layer = DeformConv2d(4, 4, deformable_groups=1)
    with torch.no_grad():
        layer.offset_conv.bias[0::2] = 1.0  # every tap one row down
    # tap (i, j) of output (h, w) reads x[h + i, w + j - 1]: no padding on top, two rows below
    expected = F.conv2d(F.pad(x, (1, 1, 0, 2)), layer.weight)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        layer.offset_conv.bias.zero_()
        layer.offset_conv.bias[1::2] = 1.0  # every tap one column right
    expected = F.conv2d(F.pad(x, (0, 2, 1, 1)), layer.weight)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_offsets_get_gradients_from_the_zero_start():
    torch.manual_seed(0)
    layer = DeformConv2d(8, 8, deformable_groups=4, modulated=True)
    layer(torch.randn(2, 8, 6, 6)).square().sum().backward()
    assert layer.offset_conv.weight.grad.abs().sum() > 0
    assert layer.offset_conv.bias.grad[: layer.num_offsets].abs().sum() > 0  # offsets
    assert layer.offset_conv.bias.grad[layer.num_offsets:].abs().sum() > 0  # mask
    assert layer.weight.grad.abs().sum() > 0


def test_folded_frozen_bn_equals_conv_then_bn():
    torch.manual_seed(0)
    layer, bn = DeformConv2d(8, 6, deformable_groups=2), FrozenBatchNorm2d(6)
    with torch.no_grad():
        layer.offset_conv.weight.normal_(0, 0.1)
        bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 8, 7, 7)
    torch.testing.assert_close(layer(x, *bn.scale_and_shift()), bn(layer(x)), rtol=1e-5, atol=1e-5)


def small_dcn_resnet(fuse: bool, modulated: bool = False) -> torch.nn.Module:
    # SimpleDet's DCNv2 placement at a small scale: every block of stages 3 and 4 (layer2, layer3)
    return ResNetConfig(depth=50, base_width=16, out_features=("c4",), dcn_blocks=(0, 4, 6, 0), dcn_modulated=modulated,
                  fuse_frozen_bn=fuse).build()


def test_resnet_with_dcn_builds_runs_and_trains():
    torch.manual_seed(0)
    model = small_dcn_resnet(fuse=True, modulated=True)
    deform = [name for name, m in model.named_modules() if isinstance(m, DeformConv2d)]
    assert deform == [f"layer2.{i}.conv2" for i in range(4)] + [f"layer3.{i}.conv2" for i in range(6)]
    assert "layer2.0.conv2.offset_conv.weight" in model.state_dict() and not hasattr(model, "layer4")
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv2.offset_conv.stride == (2, 2)
    out = model(torch.rand(1, 3, 64, 64))["c4"]
    assert out.shape == (1, 256, 4, 4)
    out.square().mean().backward()
    assert model.layer3[5].conv2.offset_conv.weight.grad.abs().sum() > 0


def test_dcn_placement_last_blocks_only():
    # SimpleDet's "DCN" rows
    model = ResNetConfig(depth=50, base_width=16, out_features=("c4",), dcn_blocks=(0, 0, 3, 0)).build()
    deform = [name for name, m in model.named_modules() if isinstance(m, DeformConv2d)]
    assert deform == ["layer3.3.conv2", "layer3.4.conv2", "layer3.5.conv2"]


def test_folded_frozen_bn_with_dcn_equals_separate_bn():
    torch.manual_seed(0)
    plain = small_dcn_resnet(fuse=False)
    randomise_frozen_bn(plain)
    with torch.no_grad():
        for m in plain.modules():
            if isinstance(m, DeformConv2d):
                m.offset_conv.weight.normal_(0, 0.01)  # non-trivial offsets
    fused = small_dcn_resnet(fuse=True)
    fused.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    a, b = plain(x)["c4"], fused(x)["c4"]
    assert float((a - b).detach().abs().max()) <= 1e-4 * float(a.detach().abs().max())
    a.square().mean().backward()
    b.square().mean().backward()
    p, q = plain.layer3[5].conv2.offset_conv.weight.grad, fused.layer3[5].conv2.offset_conv.weight.grad
    assert float((p - q).abs().max()) <= 1e-3 * float(p.abs().max())


@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_under_cpu_bf16_autocast(modulated):
    """Mixed precision on the CPU (train.amp_dtype=bfloat16): the layer runs, in fp32, and agrees
    with its fp32 run up to the bf16 rounding of the offset conv. On average: MXNet's DCNv1 border
    rule is discontinuous at y = H (full value, then 0), so a rounded offset can flip one tap."""
    torch.manual_seed(0)
    conv = DeformConv2d(8, 8, 3, padding=1, deformable_groups=2, modulated=modulated)
    torch.nn.init.normal_(conv.offset_conv.weight, std=0.05)
    x = torch.randn(1, 8, 10, 12)
    reference = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.float32
    assert (out - reference).abs().mean() < 0.01 * reference.abs().mean()
