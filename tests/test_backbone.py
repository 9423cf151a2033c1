import torch

from simpledet.modeling.backbones.resnet import ResNet
from simpledet.modeling.norm import FrozenBatchNorm2d


def randomise_frozen_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.numel()
            m.weight.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def test_output_names_strides_and_channels():
    model = ResNet(depth=50)
    feats = model(torch.rand(1, 3, 64, 96))
    assert list(feats) == ["c2", "c3", "c4", "c5"]
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in feats.values()] == [256, 512, 1024, 2048]
    assert model.out_channels == {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}


def test_v1_and_v1b_put_the_stride_in_different_convs():
    v1, v1b = ResNet(depth=50, variant="v1"), ResNet(depth=50, variant="v1b")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v1b.layer2[0].conv1.stride == (1, 1) and v1b.layer2[0].conv2.stride == (2, 2)


def test_freeze_at_two_freezes_stem_and_stage_one():
    model = ResNet(depth=18, freeze_at=2)
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    # frozen BN holds buffers only: nothing to train
    assert not any(isinstance(m, FrozenBatchNorm2d) and list(m.parameters()) for m in model.modules())


def test_folded_frozen_bn_equals_separate_bn_forward_and_backward():
    torch.manual_seed(0)
    plain = ResNet(depth=50, fuse_frozen_bn=False)
    randomise_frozen_bn(plain)
    fused = ResNet(depth=50, fuse_frozen_bn=True)
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
    model = ResNet(depth=18, norm="bn", freeze_at=0, base_width=16)
    assert isinstance(model.bn1, torch.nn.BatchNorm2d) and model.bn1.weight.requires_grad
