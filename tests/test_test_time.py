"""Soft-NMS (hand-computed decays) and test-time augmentation (scales and flips merged back)."""

import math

import torch
from torch import nn

from simpledet import build_model
from simpledet.engine.tta import augmented_inference
from simpledet.modeling.nms import class_nms
from simpledet.modeling.preprocess import ImagePreprocessor

from .helpers import small_config

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 2.5, 10.0, 12.5], [0.0, 0.0, 10.0, 10.0]])
SCORES = torch.tensor([0.9, 0.8, 0.7])
LABELS = torch.tensor([1, 1, 2])  # boxes 0 and 1 overlap with IoU 0.6; box 2 is another class


def test_hard_nms_removes_the_overlap():
    keep, scores = class_nms(BOXES, SCORES, LABELS, 0.5, 100)
    assert keep.tolist() == [0, 2]


def test_soft_nms_linear_and_gaussian_decay():
    keep, scores = class_nms(BOXES, SCORES, LABELS, 0.5, 100, method="soft_linear")
    assert keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.8 * (1 - 0.6)]))
    keep, scores = class_nms(BOXES, SCORES, LABELS, 0.5, 100, method="soft_gaussian", sigma=0.5)
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.8 * math.exp(-0.36 / 0.5)]))


def test_soft_nms_stops_at_max_keep():
    keep, _ = class_nms(BOXES, SCORES, LABELS, 0.5, 2, method="soft_gaussian")
    assert keep.tolist() == [0, 2]


class LeftBoxDetector(nn.Module):
    """Finds one box over the left third of whatever it sees, in its input's pixels."""

    def __init__(self):
        super().__init__()
        self.preprocess = ImagePreprocessor((100,), 1000, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.calls = []

    def forward(self, images):
        self.calls.append(self.preprocess.test_min_size)
        out = []
        for img in images:
            h, w = img.shape[-2:]
            left = float(img[0, 0, 0] > 0.5)  # the marker pixel tells which side is which
            x1, x2 = (0.0, w / 3) if left else (2 * w / 3, float(w))
            out.append({"boxes": torch.tensor([[x1, 0.0, x2, float(h)]]), "scores": torch.tensor([0.9]),
                        "labels": torch.tensor([1])})
        return out


def test_flip_runs_are_mapped_back_and_merged():
    image = torch.zeros(3, 30, 60)
    image[0, 0, 0] = 1.0  # marker at the top-left
    model = LeftBoxDetector().eval()
    (det,) = augmented_inference(model, [image], scales=(80, 120), flip=True)
    assert model.calls == [80, 80, 120, 120] and model.preprocess.test_min_size == 100
    assert len(det["boxes"]) == 1  # four identical boxes after un-flipping: one survives NMS
    torch.testing.assert_close(det["boxes"][0], torch.tensor([0.0, 0.0, 20.0, 30.0]))


def test_real_model_under_tta_and_soft_nms(shapes_dir):
    cfg = small_config(shapes_dir, "model.roi_heads.nms_method=soft_gaussian")
    model = build_model(cfg).eval()
    image = torch.rand(3, 128, 128)
    with torch.no_grad():
        (det,) = augmented_inference(model, [image], scales=(96, 128), flip=True)
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) <= 100
    assert (det["boxes"][:, 2] <= 128 + 1e-3).all()
