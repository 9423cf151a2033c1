"""Our Faster R-CNN, given torchvision's weights through `simpledet convert torchvision`, finds
the same detections as torchvision's fasterrcnn_resnet50_fpn on a real photograph."""

import torch
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d

from simpledet import build_model, load_config
from simpledet.data.image_io import read_image
from simpledet.engine.checkpoint import load_weights

from .conftest import REPO
from .helpers import assert_same_detections, converted_from_torchvision, randomise_frozen_bn


def torchvision_model() -> torch.nn.Module:
    """fasterrcnn_resnet50_fpn as torchvision builds it around a pretrained backbone (frozen BN,
    3 trainable stages), with random weights and randomised BN statistics."""
    torch.manual_seed(0)
    model = FasterRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes=91,
                       box_score_thresh=0.0)
    randomise_frozen_bn(model)
    return model.eval()


def test_same_detections_as_torchvision(tmp_path, photo_path):
    reference = torchvision_model()
    ours = converted_from_torchvision(reference, REPO / "configs/torchvision/fasterrcnn_resnet50_fpn.py",
                                      ["model.roi_heads.score_thresh=0"], tmp_path)
    image = read_image(photo_path)
    with torch.no_grad():
        expected = reference([image])[0]
        got = ours([image])[0]
    assert_same_detections(got, expected, 100)


def test_torchvision_checkpoint_loads_directly_and_with_batchnorm_counters(tmp_path):
    # a model trained from scratch has nn.BatchNorm2d (num_batches_tracked buffers): skipped
    torch.manual_seed(0)
    tv = FasterRCNN(_resnet_fpn_extractor(resnet50(), 5), num_classes=91)
    path = tmp_path / "tv_bn.pth"
    torch.save(tv.state_dict(), path)
    cfg = load_config(REPO / "configs/torchvision/fasterrcnn_resnet50_fpn.py")
    ours = build_model(cfg)
    load_weights(ours, path)
    torch.testing.assert_close(ours.backbone.layer1[0].conv1.weight, tv.backbone.body.layer1[0].conv1.weight)
    torch.testing.assert_close(ours.roi_heads.box_predictor.bbox_pred.bias, tv.roi_heads.box_predictor.bbox_pred.bias)
