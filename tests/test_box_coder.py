import math

import torch
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from simpledet.modeling.box_coder import BoxCoder


def random_boxes(n: int, generator: torch.Generator, corner: float = 500, size: float = 200) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * corner
    return torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=generator) * size], dim=1)


def test_encode_hand_computed():
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    tgt = torch.tensor([[1.0, 2.0, 11.0, 22.0]])  # centre (6, 12), size 10 x 20
    d = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode(ref, tgt)
    torch.testing.assert_close(d, torch.tensor([[0.1, 0.7, 0.0, math.log(2.0)]]))
    # SimpleDet's std (0.1, 0.1, 0.2, 0.2) is weights (10, 10, 5, 5)
    d = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(ref, tgt)
    torch.testing.assert_close(d, torch.tensor([[1.0, 7.0, 0.0, 5 * math.log(2.0)]]))


def test_decode_inverts_encode_and_handles_classes():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(50, 2, generator=g) * 100
    ref = torch.cat([ref, ref + 1 + torch.rand(50, 2, generator=g) * 50], dim=1)
    tgt = torch.rand(50, 2, generator=g) * 100
    tgt = torch.cat([tgt, tgt + 1 + torch.rand(50, 2, generator=g) * 50], dim=1)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    deltas = coder.encode(ref, tgt)
    torch.testing.assert_close(coder.decode(deltas, ref)[:, 0], tgt, rtol=1e-5, atol=1e-3)
    # K boxes per reference: (N, 4K) -> (N, K, 4)
    three = coder.decode(deltas.repeat(1, 3), ref)
    assert three.shape == (50, 3, 4)
    torch.testing.assert_close(three[:, 2], tgt, rtol=1e-5, atol=1e-3)


def test_decode_clamps_huge_scales():
    ref = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), ref)[0, 0]
    # exp(log(1000/16)) * 16 = 1000 px wide, centred at 8
    torch.testing.assert_close(out, torch.tensor([8 - 500.0, 8 - 500.0, 8 + 500.0, 8 + 500.0]))


def test_decode_bit_identical_to_torchvision():
    g = torch.Generator().manual_seed(1)
    ref = random_boxes(200, g)
    deltas = torch.randn(200, 4 * 5, generator=g)
    weights = (10.0, 10.0, 5.0, 5.0)
    ours = BoxCoder(weights).decode(deltas, ref)
    theirs = TorchvisionBoxCoder(weights).decode(deltas, [ref]).reshape(200, 5, 4)
    assert torch.equal(ours, theirs)


def test_encode_bit_identical_to_torchvision():
    g = torch.Generator().manual_seed(2)
    ref, tgt = random_boxes(300, g), random_boxes(300, g)
    for weights in ((10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0), (10.0, 20.0, 5.0, 3.0)):
        ours = BoxCoder(weights).encode(ref, tgt)
        theirs = TorchvisionBoxCoder(weights).encode_single(tgt, ref)
        assert torch.equal(ours, theirs), weights


def test_decode_with_unequal_weights_bit_identical_to_torchvision():
    """x and y (and width and height) weighted differently: the weights as a 2-vector."""
    g = torch.Generator().manual_seed(3)
    ref = random_boxes(100, g)
    deltas = torch.randn(2, 100, 4 * 3, generator=g)
    weights = (10.0, 20.0, 5.0, 3.0)
    ours = BoxCoder(weights).decode(deltas, ref[None])  # (2, 100, 3, 4): batch dims broadcast
    for image in range(2):
        theirs = TorchvisionBoxCoder(weights).decode(deltas[image], [ref]).reshape(100, 3, 4)
        assert torch.equal(ours[image], theirs)
