"""SimpleDet's multi-scale TridentNet options (backbones/trident_v2.py): a BatchNorm per branch and
deformable 3x3 convs sampled at each branch's dilation, on ResNet v2 blocks; the zoo config that uses
them builds with SimpleDet's layout."""

import copy

import pytest
import torch

from simpledet.config import load_config
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.layers.deform_conv import DeformConv2d

from .conftest import REPO

MULTISCALE = REPO / "configs/tridentnet_r101v2c4_c5_multiscale_addminival_3x_fp16.py"
QUICK_TRIDENT = REPO / "configs/quickstart/tridentnet_r18c4_shapes.py"


def test_zoo_config_builds_simpledet_layout():
    cfg = load_config(MULTISCALE)
    with torch.device("meta"):
        model = cfg.model.build()
    stage = model.backbone.body.layer3  # 23 blocks; 22 trident blocks, the last 3 deformable
    assert [isinstance(block.conv2, DeformConv2d) for block in stage] == [False] * 20 + [True] * 3
    deform = stage[-1].conv2
    assert deform.offset_conv.dilation == (1, 1) and deform.offset_conv.padding == (1, 1)
    assert deform.num_offsets == 72  # 4 deformable groups x 9 taps x (y, x), as SimpleDet's conv2_offset
    norms = model.backbone.branch_norms
    assert sorted(norms) == ["branch1", "branch2"] and sorted(norms["branch1"], key=int) == [str(i) for i in
                                                                                          range(1, 23)]
    assert sorted(norms["branch2"]["22"]) == ["bn1", "bn2", "bn3"]
    assert cfg.data.rand_resize_crop.short_sides == (600, 800, 1000, 1200) and cfg.test.nms_method == "soft_linear"


def small_trident(*, shared_norms: bool, deform_blocks: int, norm: str = "frozen_bn"):
    cfg = load_config(QUICK_TRIDENT)
    cfg.model.backbone = ResNetV2Config(depth=50, norm=norm, freeze_at=0, base_width=8, data_bn=False,
                                        out_features=("c4",))
    cfg.model.trident.num_trident_blocks = 3
    cfg.model.trident.shared_norms = shared_norms
    cfg.model.trident.deform_blocks = deform_blocks
    return cfg.model.build()


def randomise_norms(model):
    generator = torch.Generator().manual_seed(0)
    for name, buffer in model.named_buffers():
        if name.endswith(("running_var", "weight")) and buffer.is_floating_point():
            buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
        elif name.endswith(("running_mean", "bias")) and buffer.is_floating_point():
            buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))


@pytest.fixture(scope="module")
def plain_and_branched():
    torch.manual_seed(0)
    plain = small_trident(shared_norms=True, deform_blocks=0)
    randomise_norms(plain)
    branched = small_trident(shared_norms=False, deform_blocks=2)
    state = branched.state_dict()
    for key, value in plain.state_dict().items():  # same convs and norms; branch copies of the norms
        state[key] = value
    for key in state:
        if key.startswith("backbone.branch_norms."):
            _, _, _, index, rest = key.split(".", 4)
            state[key] = plain.state_dict()[f"backbone.body.layer3.{index}.{rest}"]
    branched.load_state_dict(state)  # deformable offsets stay zero
    return plain.eval(), branched.eval()


def test_equal_branch_norms_and_zero_offsets_give_the_shared_trident(plain_and_branched):
    plain, branched = plain_and_branched
    x = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = plain.backbone(x)["c4"]
        got = branched.backbone(x)["c4"]
    assert got.shape == want.shape == (6, 128, 4, 5)  # 3 branches x 2 images, branch-major
    # the deformable kernel sums in another order than the plain conv: float rounding only
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5 * float(want.abs().max()))


def test_each_branch_reads_its_own_norms(plain_and_branched):
    _, branched = plain_and_branched
    model = copy.deepcopy(branched)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model.backbone(x)["c4"]
        model.backbone.branch_norms["branch2"]["5"].bn3.bias.add_(1.0)  # the last block's, branch 2 only
        after = model.backbone(x)["c4"]
    assert torch.equal(after[:2], before[:2])  # branches 0 and 1
    assert not torch.allclose(after[2], before[2])


def test_deformable_branches_sample_at_their_dilation():
    torch.manual_seed(0)
    conv = DeformConv2d(8, 8, 3, padding=1, dilation=1, deformable_groups=4)
    plain = torch.nn.Conv2d(8, 8, 3, padding=3, dilation=3, bias=False)
    plain.weight.data.copy_(conv.weight.data)
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(conv(x, dilation=3), plain(x), rtol=1e-5, atol=1e-5)  # zero offsets
        conv.offset_conv.bias.fill_(1.0)  # every tap one pixel down and right
        shifted = conv(x, dilation=3)
        padded = torch.nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # x moved by (1, 1), zeros beyond
        # where every tap of both lands inside the image (rows and columns 3..4 at dilation 3): the plain
        # conv's zero padding would read zeros where the shifted taps read the image
        torch.testing.assert_close(shifted[..., 3:5, 3:5], plain(padded)[..., 3:5, 3:5], rtol=1e-4, atol=1e-4)


def test_branched_deformable_trident_trains():
    torch.manual_seed(0)
    model = small_trident(shared_norms=False, deform_blocks=2, norm="bn").train()
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(3))]
    targets = [dict(boxes=torch.tensor([[10.0, 10.0, 40.0, 44.0], [50.0, 20.0, 90.0, 70.0]]),
                    labels=torch.tensor([1, 2]))]
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    offset = model.backbone.body.layer3[-1].conv2.offset_conv.weight.grad
    branch_bn = model.backbone.branch_norms["branch1"]["5"].bn2.weight.grad
    assert offset is not None and offset.abs().sum() > 0
    assert branch_bn is not None and branch_bn.abs().sum() > 0


def test_refusals():
    with pytest.raises(ValueError, match="ResNet v2"):
        cfg = load_config(QUICK_TRIDENT)
        cfg.model.trident.deform_blocks = 1
        cfg.model.build()
    with pytest.raises(ValueError, match="deform_blocks must be in"):
        small_trident(shared_norms=True, deform_blocks=4)
