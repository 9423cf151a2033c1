"""Our Mask R-CNN, given torchvision's weights through `simpledet convert torchvision`, finds the
same detections and masks as torchvision's maskrcnn_resnet50_fpn on a real photograph."""

import torch
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import FrozenBatchNorm2d

from simpledet import build_model, load_config
from simpledet.data.image_io import read_image
from simpledet.modeling.heads.mask_head import paste_masks
from simpledet.weights.torchvision import convert_torchvision

from .conftest import REPO
from .helpers import assert_same_detections, converted_from_torchvision, randomise_frozen_bn

CONFIG = REPO / "configs/torchvision/maskrcnn_resnet50_fpn.py"


def torchvision_model() -> torch.nn.Module:
    """maskrcnn_resnet50_fpn as torchvision builds it around a pretrained backbone (frozen BN,
    3 trainable stages), with random weights and randomised BN statistics."""
    torch.manual_seed(3)  # a seed whose random detector finds a full 100 boxes on the photo
    model = MaskRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes=91,
                     box_score_thresh=0.0)
    randomise_frozen_bn(model)
    g = torch.Generator().manual_seed(2)
    # torchvision leaves the mask predictor's biases at PyTorch's default init; give the logits
    # an offset so the masks are neither all 0 nor all 1 and their comparison means something
    with torch.no_grad():
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.normal_(0.0, 1.0, generator=g)
    return model.eval()


def test_same_detections_and_masks_as_torchvision(tmp_path, photo_path):
    reference = torchvision_model()
    ours = converted_from_torchvision(reference, CONFIG, ["model.roi_heads.score_thresh=0"], tmp_path)
    image = read_image(photo_path)
    with torch.no_grad():
        expected = reference([image])[0]
        got = ours([image])[0]
    assert_same_detections(got, expected, 100)
    assert got["masks"].shape == expected["masks"].shape == (100, 1, *image.shape[-2:])
    assert got["masks"].dtype == torch.float32 and 0 <= got["masks"].min() and got["masks"].max() <= 1
    assert (got["masks"] - expected["masks"]).abs().mean() <= 1e-4
    binary = expected["masks"] > 0.5
    assert 0.01 < binary.float().mean() < 0.99, "masks that are all 0 or all 1 would prove nothing"
    assert (binary != (got["masks"] > 0.5)).float().mean() <= 1e-4


def test_every_torchvision_mask_parameter_is_converted():
    reference = MaskRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes=91)
    converted, skipped = convert_torchvision(reference.state_dict())
    assert skipped == []
    ours = build_model(load_config(CONFIG))
    assert set(converted) == set(ours.state_dict())
    # the COCO checkpoint file predates the Conv2dNormActivation layout: mask_fcn1..4
    old = {k.replace("mask_head.0.0.", "mask_head.mask_fcn1."): v for k, v in reference.state_dict().items()}
    assert convert_torchvision(old)[0].keys() == converted.keys()


def test_batched_paste_is_torchvision_paste():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(60, 1, 28, 28, generator=g)
    xy = torch.rand(60, 2, generator=g) * 90 - 10
    boxes = torch.cat([xy, xy + torch.rand(60, 2, generator=g) * 60], 1)
    boxes[:4, 2:] = boxes[:4, :2] + torch.rand(4, 2, generator=g)  # boxes under a pixel wide
    boxes = boxes.clamp(0, 70)  # detections are clipped to the image
    expected = paste_masks_in_image(masks, boxes, (70, 83))
    got = paste_masks(masks, boxes, (70, 83))
    assert got.shape == expected.shape == (60, 1, 70, 83)
    assert (got - expected).abs().max() <= 1e-5
    assert paste_masks(masks[:0], boxes[:0], (5, 6)).shape == (0, 1, 5, 6)
