"""`train.init_from`: fine-tuning from a checkpoint for another number of classes."""

import logging

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d

from simpledet import build_model
from simpledet.engine.checkpoint import read_state_dict
from simpledet.engine.rng import seed_everything
from simpledet.engine.trainer import Trainer
from simpledet.errors import UserError
from simpledet.weights.file_format import write_state_dict
from simpledet.weights.init_from import init_from
from simpledet.weights.torchvision import convert_torchvision

from .helpers import small_config

CLASSIFIER = ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias")


@pytest.fixture(scope="module")
def source(shapes_dir, tmp_path_factory):
    """A 7-class checkpoint (the quick-start detector, its own seed) as a .pt file, with one tensor
    the 4-class model has no place for."""
    seed_everything(123)
    model = build_model(small_config(shapes_dir, "model.num_classes=7"))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics a fresh layer does not have
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("init_from") / "seven_classes.pt"
    write_state_dict(path, {**model.state_dict(), "extra.weight": torch.ones(3)})
    return path


def _fresh(cfg) -> nn.Module:
    seed_everything(cfg.train.seed)  # as the trainer does before building
    return build_model(cfg)


def test_matching_tensors_are_carried_over_and_the_rest_logged(shapes_dir, source, tmp_path, caplog):
    cfg = small_config(shapes_dir, f"train.init_from={source}")  # 4 classes
    with caplog.at_level(logging.INFO, logger="simpledet.weights.init_from"):
        model = Trainer(cfg, tmp_path / "run").model
    saved, fresh = read_state_dict(source), _fresh(cfg).state_dict()
    differing = {name for name, value in fresh.items() if saved[name].shape != value.shape}
    assert differing == set(CLASSIFIER)  # 8 vs 5 outputs; the quick start's box deltas are class-agnostic
    for name, value in model.state_dict().items():
        if name in differing:  # fresh initialisation, as a model built without init_from
            assert torch.equal(value, fresh[name]), name
        else:  # bit for bit the file's
            assert torch.equal(value, saved[name]), name
    log = caplog.text
    assert f"init_from {source}: {len(fresh) - 2} of the model's {len(fresh)} tensors loaded" in log
    assert "shape (8, 256) in the file, (5, 256) in the model (kept at initialisation): " + CLASSIFIER[0] in log
    assert "shape (8,) in the file, (5,) in the model (kept at initialisation): " + CLASSIFIER[1] in log
    assert "in the file with no place in the model: extra.weight (3,)" in log
    assert "not in the file" not in log


def test_frozen_bn_counts_init_from_as_weights(shapes_dir, source, tmp_path):
    frozen = ("model.backbone.norm=frozen_bn", "model.backbone.freeze_at=2")
    with pytest.raises(UserError, match="train.init_from=CHECKPOINT"):
        Trainer(small_config(shapes_dir, *frozen), tmp_path / "a")
    model = Trainer(small_config(shapes_dir, *frozen, f"train.init_from={source}"), tmp_path / "b").model
    saved = read_state_dict(source)
    for name, value in model.backbone.state_dict().items():  # frozen BN's statistics included
        assert torch.equal(value, saved[f"backbone.{name}"]), name


def test_resume_ignores_init_from(shapes_dir, source, tmp_path, caplog):
    out = tmp_path / "run"
    trainer = Trainer(small_config(shapes_dir, f"train.init_from={source}"), out)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)  # what training would do: the checkpoint no longer equals the file
    trainer.save_checkpoint(1)
    expected = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    # on resume the checkpoint wins; init_from is not even read (here it names no file)
    cfg = small_config(shapes_dir, f"train.init_from={tmp_path / 'gone.pt'}")
    with caplog.at_level(logging.INFO):
        resumed = Trainer(cfg, out, resume=True)
    assert not [r for r in caplog.records if r.name == "simpledet.weights.init_from"]
    assert "resuming from" in caplog.text
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def _torchvision_faster_rcnn() -> FasterRCNN:
    """A small torchvision Faster R-CNN with torchvision's module names: ResNet-18 FPN at 64
    channels, the 2MLP box head at 256, COCO's 91 outputs."""
    torch.manual_seed(7)
    body = resnet18(norm_layer=FrozenBatchNorm2d)
    for m in body.modules():
        if isinstance(m, FrozenBatchNorm2d):  # statistics that are not the identity
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-0.1, 0.1)
    backbone = BackboneWithFPN(body, {f"layer{i}": str(i - 1) for i in range(1, 5)}, [64, 128, 256, 512], 64)
    return FasterRCNN(backbone, box_head=TwoMLPHead(64 * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, 91))


def test_a_torchvision_detector_by_name(shapes_dir, tmp_path, monkeypatch, caplog):
    """`torchvision:ENUM` through torchvision's own weights API and torch.hub's cache (seeded here
    with a small detector of torchvision's layout under the enum's file name), renamed on the fly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    tv = _torchvision_faster_rcnn().state_dict()
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(tv, checkpoints / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")

    cfg = small_config(shapes_dir, "model.backbone.base_width=64")
    model = build_model(cfg)
    with caplog.at_level(logging.INFO, logger="simpledet.weights.init_from"):
        report = init_from(model, "torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    ours, _ = convert_torchvision(tv)
    state = model.state_dict()
    for name in report.loaded:
        assert torch.equal(state[name], ours[name]), name
    # the whole backbone, FPN, RPN and box head came across; torchvision's 91-way predictor did not
    assert {n for n in state if n.startswith(("backbone.", "neck.", "rpn.", "roi_heads.box_head."))
            and not n.endswith("num_batches_tracked")} <= set(report.loaded)
    assert report.shape_differs == {
        "roi_heads.box_predictor.cls_score.weight": ((91, 256), (5, 256)),
        "roi_heads.box_predictor.cls_score.bias": ((91,), (5,)),
        "roi_heads.box_predictor.bbox_pred.weight": ((364, 256), (4, 256)),
        "roi_heads.box_predictor.bbox_pred.bias": ((364,), (4,))}
    assert "(364, 256) in the file, (4, 256) in the model" in caplog.text


def test_a_backbone_file_is_pointed_to_model_backbone_pretrained(shapes_dir, tmp_path):
    torch.save(resnet18().state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(UserError, match=r"none of its \d+ tensors fits this model.*model\.backbone\.pretrained"):
        init_from(build_model(small_config(shapes_dir)), str(tmp_path / "imagenet.pth"))
