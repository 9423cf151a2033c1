import torch
from torchvision.ops import box_iou

from simpledet.modeling.box_iou import batched_box_iou


def random_boxes(*shape: int) -> torch.Tensor:
    xy = torch.rand(*shape, 2) * 100
    wh = torch.rand(*shape, 2) * 50
    wh[..., 0, :] = 0.0  # a degenerate box in every set: zero area, IoU 0 or NaN alike
    return torch.cat([xy, xy + wh], dim=-1)


def test_batched_box_iou_is_torchvisions_box_iou_image_by_image_bit_for_bit():
    torch.manual_seed(0)
    a, b = random_boxes(3, 7), random_boxes(3, 11)
    expected = torch.stack([box_iou(x, y) for x, y in zip(a, b)])
    assert torch.equal(batched_box_iou(a, b).nan_to_num(-1), expected.nan_to_num(-1))


def test_batched_box_iou_against_boxes_shared_by_every_image():
    torch.manual_seed(1)
    gt, anchors = random_boxes(2, 5), random_boxes(40)
    expected = torch.stack([box_iou(g, anchors) for g in gt])
    got = batched_box_iou(gt, anchors)
    assert got.shape == (2, 5, 40)
    assert torch.equal(got.nan_to_num(-1), expected.nan_to_num(-1))
