"""The frozen BN's folded scale and shift: computed once, recomputed whenever a buffer changes,
and the same function as computing them afresh (in a folded ResNet, outputs and gradients)."""

import copy

import torch

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.norm import FrozenBatchNorm2d


def fresh(bn: FrozenBatchNorm2d) -> torch.Tensor:
    return bn.weight * (bn.running_var + bn.eps).rsqrt()


def test_fold_is_reused_until_a_buffer_changes():
    bn = FrozenBatchNorm2d(4)
    first = bn.scale_and_shift()[0]
    assert bn.scale_and_shift()[0] is first  # no recomputation while nothing changed
    state = {"weight": torch.arange(1.0, 5.0), "bias": torch.ones(4), "running_mean": torch.full((4,), 0.5),
             "running_var": torch.full((4,), 4.0)}
    bn.load_state_dict(state)  # writes the buffers in place
    scale, shift = bn.scale_and_shift()
    torch.testing.assert_close(scale, fresh(bn))
    torch.testing.assert_close(shift, bn.bias - bn.running_mean * fresh(bn))
    bn.running_var.mul_(4.0)  # any in-place change
    torch.testing.assert_close(bn.scale_and_shift()[0], fresh(bn))
    copied = copy.deepcopy(bn)  # new buffers
    copied.weight.fill_(3.0)
    torch.testing.assert_close(copied.scale_and_shift()[0], fresh(copied))
    torch.testing.assert_close(bn.scale_and_shift()[0], fresh(bn))
    bn.double()  # replaced buffers
    assert bn.scale_and_shift()[0].dtype == torch.float64


def test_fold_first_made_in_inference_mode_serves_training():
    """Evaluation during training runs under inference_mode; the fold it makes must still be
    usable by autograd afterwards."""
    bn = FrozenBatchNorm2d(4)
    with torch.inference_mode():
        bn.scale_and_shift()
    weight = torch.ones(4, requires_grad=True)
    (weight * bn.scale_and_shift()[0]).sum().backward()
    torch.testing.assert_close(weight.grad, fresh(bn))


def test_folded_resnet_matches_unfolded_after_loading_weights():
    torch.manual_seed(0)
    folded = ResNetConfig(depth=18, out_features=("c3",), fuse_frozen_bn=True).build()
    folded(torch.rand(1, 3, 64, 64))  # the folds are made (and cached) with the initial buffers
    plain = ResNetConfig(depth=18, out_features=("c3",), fuse_frozen_bn=False).build()
    g = torch.Generator().manual_seed(1)
    state = {k: (torch.rand(v.shape, generator=g) + 0.5 if k.endswith(("weight", "running_var", "running_mean", "bias"))
                 and v.dim() == 1 else v) for k, v in plain.state_dict().items()}
    plain.load_state_dict(state)
    folded.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    out_folded, out_plain = folded(x)["c3"], plain(x)["c3"]
    torch.testing.assert_close(out_folded, out_plain, rtol=1e-4, atol=1e-5)
    out_folded.square().mean().backward()
    out_plain.square().mean().backward()
    for (name, a), (_, b) in zip(folded.named_parameters(), plain.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-6, msg=name)
