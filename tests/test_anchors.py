import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
from torchvision.models.detection.image_list import ImageList

from simpledet.modeling.anchors import AnchorGenerator, base_anchors


def test_base_anchors_hand_computed():
    # size 32: ratio 0.5 -> 45.25 x 22.63 -> rounded half-extents (23, 11); ratio 2 is its transpose
    a = base_anchors((32,), (0.5, 1.0, 2.0))
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    assert torch.equal(a, expected)


def test_grid_order_is_y_then_x_then_anchor():
    gen = AnchorGenerator(((32,),), ((1.0,),))
    (anchors,) = gen((64, 64), [(2, 2)], torch.device("cpu")).levels
    # stride 32; positions (x, y): (0,0), (32,0), (0,32), (32,32)
    expected = torch.tensor([[-16.0, -16.0, 16.0, 16.0], [16.0, -16.0, 48.0, 16.0],
                             [-16.0, 16.0, 16.0, 48.0], [16.0, 16.0, 48.0, 48.0]])
    assert torch.equal(anchors, expected)


def test_matches_torchvision_anchor_generator():
    sizes = ((32,), (64,), (128,), (256,), (512,))
    ratios = ((0.5, 1.0, 2.0),) * 5
    feature_sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    generator = AnchorGenerator(sizes, ratios)
    ours = torch.cat(generator((800, 1216), feature_sizes, torch.device("cpu")).levels)
    images = ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)])
    feats = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    theirs = TorchvisionAnchors(sizes, ratios)(images, feats)[0]
    assert torch.equal(ours, theirs)
    # the cached concatenation is the same, and made once per shape
    flat = generator((800, 1216), feature_sizes, torch.device("cpu")).all
    assert torch.equal(flat, theirs)
    assert generator((800, 1216), feature_sizes, torch.device("cpu")).all is flat
