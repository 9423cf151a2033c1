"""Our RetinaNet, given torchvision's weights through `simpledet convert torchvision`, finds the
same detections as torchvision's retinanet_resnet50_fpn on a real photograph."""

import re

import torch
from torchvision.models import resnet50
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from simpledet import build_model, load_config
from simpledet.data.image_io import read_image
from simpledet.weights.torchvision import convert_torchvision, is_torchvision_detection

from .conftest import REPO
from .helpers import assert_same_detections, converted_from_torchvision, randomise_frozen_bn

CONFIG = REPO / "configs/torchvision/retinanet_resnet50_fpn.py"


def torchvision_model() -> torch.nn.Module:
    """retinanet_resnet50_fpn as torchvision builds it around a pretrained backbone (frozen BN,
    3 trainable stages, P6 from P5), with random weights and randomised BN statistics."""
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    model = RetinaNet(backbone, num_classes=91, score_thresh=0.0)
    randomise_frozen_bn(model)
    with torch.no_grad():
        # the random backbone's features are in the hundreds: scaled down, the predictors give
        # scores spread over (0, 1) and moderate box deltas instead of saturated ones
        model.head.classification_head.cls_logits.weight.mul_(0.1)
        model.head.regression_head.bbox_reg.weight.mul_(0.1)
    return model.eval()


def test_same_detections_as_torchvision(tmp_path, photo_path):
    reference = torchvision_model()
    ours = converted_from_torchvision(reference, CONFIG, ["model.head.score_thresh=0"], tmp_path)

    image = read_image(photo_path)
    images = [image, image[:, 100:500, 50:400]]  # two sizes: a padded batch
    with torch.no_grad():
        expected = reference(images)
        got = ours(images)
    for exp, det in zip(expected, got):
        assert_same_detections(det, exp, 300)


def test_converter_names_cover_both_head_layouts():
    reference = torchvision_model()
    state = reference.state_dict()
    assert is_torchvision_detection(state)
    ours = build_model(load_config(CONFIG))
    converted, skipped = convert_torchvision(state)
    assert not [s for s in skipped if not s.endswith("num_batches_tracked")]
    assert set(converted) == set(ours.state_dict())
    # older checkpoint files name the head convs conv.0/2/4/6 (ReLUs in between)
    old = {re.sub(r"_head\.conv\.(\d)\.0\.", lambda m: f"_head.conv.{2 * int(m[1])}.", k): v
           for k, v in state.items()}
    assert "head.classification_head.conv.6.weight" in old
    converted_old, _ = convert_torchvision(old)
    assert set(converted_old) == set(converted)
    for name, value in converted.items():
        assert torch.equal(converted_old[name], value)
