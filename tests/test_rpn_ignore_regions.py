"""Ignore regions in the RPN's training (SimpleDet's CrowdHuman RPN): anchors covered by a crowd
box to at least `ignore_iof` of their area are neither background nor sampled; foreground anchors
stay foreground. Labels checked on hand-placed anchors, then the regions' way from the data to the
loss: dataset, flip, resize, padding and the input checks."""

from pathlib import Path

import pytest
import torch

from simpledet import load_config
from simpledet.modeling.box_iou import batched_box_iof
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.matcher import BACKGROUND, FOREGROUND, IGNORE
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes

from .conftest import REPO
from .helpers import small_config

# one object at (0, 0, 10, 10); one ignore region (45, 45, 100, 100), with a second object inside it
OBJECTS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [60.0, 60.0, 70.0, 70.0]])
REGION = torch.tensor([[45.0, 45.0, 100.0, 100.0]])
ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],  # the first object: foreground
    [50.0, 50.0, 60.0, 60.0],  # wholly in the region: covered 1.0 -> ignored
    [40.0, 40.0, 50.0, 50.0],  # 5 x 5 of its 10 x 10 in the region: 0.25 < 0.3 -> background
    [42.0, 42.0, 52.0, 52.0],  # 7 x 7 of 10 x 10: 0.49 -> ignored
    [200.0, 200.0, 210.0, 210.0],  # far from everything: background
    [60.0, 60.0, 70.0, 70.0],  # the second object, inside the region: stays foreground
    [45.0, 80.0, 85.0, 120.0],  # 40 x 20 of 40 x 40 in the region: 0.5 -> ignored
])
COVERED = [0.0, 1.0, 0.25, 0.49, 0.0, 1.0, 0.5]


def _labels(ignore_iof: float | None, gt: PaddedGroundTruth) -> list[int]:
    rpn = RPNConfig(allowed_border=None, ignore_iof=ignore_iof).build(8)
    sizes = ImageSizes.of((256, 256), [(256, 256)] * gt.boxes.shape[0])
    return rpn.assign(ANCHORS, gt, sizes)[1].tolist()


def test_iof_by_hand() -> None:
    iof = batched_box_iof(ANCHORS, REGION[None])
    assert iof.shape == (1, len(ANCHORS), 1)
    assert iof[0, :, 0].tolist() == pytest.approx(COVERED)
    assert batched_box_iof(torch.tensor([[5.0, 5.0, 5.0, 9.0]]), REGION[None]).item() == 0.0  # no area: 0


def test_anchors_in_ignore_regions_are_not_background() -> None:
    target = {"boxes": OBJECTS, "labels": torch.tensor([1, 1]), "ignore_boxes": REGION}
    gt = PaddedGroundTruth.of([target], torch.device("cpu"))
    fg, bg, ig = FOREGROUND, BACKGROUND, IGNORE
    assert _labels(0.3, gt) == [[fg, ig, bg, ig, bg, fg, ig]]
    assert _labels(0.5, gt) == [[fg, ig, bg, bg, bg, fg, ig]]  # 0.49 < 0.5 <= 0.5
    assert _labels(None, gt) == [[fg, bg, bg, bg, bg, fg, bg]]  # no ignore_iof: regions not read
    # a batch where only one image has regions: the other image's labels are unchanged
    plain = {"boxes": OBJECTS, "labels": torch.tensor([1, 1])}
    mixed = PaddedGroundTruth.of([plain, target], torch.device("cpu"))
    assert mixed.ignore_valid.tolist() == [[False], [True]]
    assert _labels(0.3, mixed) == [[fg, bg, bg, bg, bg, fg, bg], [fg, ig, bg, ig, bg, fg, ig]]
    assert PaddedGroundTruth.of([plain], torch.device("cpu")).ignore_boxes is None


def test_ignored_anchors_are_never_sampled() -> None:
    """Over many draws, the sampler's background anchors avoid the ignored ones."""
    rpn = RPNConfig(allowed_border=None, ignore_iof=0.3, batch_size_per_image=4).build(8)
    target = {"boxes": OBJECTS, "labels": torch.tensor([1, 1]), "ignore_boxes": REGION}
    gt = PaddedGroundTruth.of([target], torch.device("cpu"))
    _, labels = rpn.assign(ANCHORS, gt, ImageSizes.of((256, 256), [(256, 256)]))
    torch.manual_seed(0)
    for _ in range(20):
        fg, bg = rpn.sampler.sample(labels)
        assert not (bg & (labels == IGNORE)).any() and not (fg & (labels == IGNORE)).any()
        assert set(bg.nonzero()[:, 1].tolist()) <= {2, 4}


def test_crowdhuman_configs_read_ignore_regions_and_others_do_not() -> None:
    for name in ("faster_r50v1b_fpn_1x", "doublepred_r50v1b_fpn_1x", "doublepred_r50v1b_fpn_1x_refine"):
        model = load_config(REPO / "configs/crowdhuman" / f"{name}.py").model
        assert model.rpn.ignore_iof == 0.3 and model.trains_on_ignore_regions, name
    assert not load_config(REPO / "configs/faster_r50v1_fpn_1x.py").model.trains_on_ignore_regions
    assert not load_config(REPO / "configs/retina_r50v1_fpn_1x.py").model.trains_on_ignore_regions  # no RPN


def test_training_step_with_ignore_regions(shapes_dir: Path) -> None:
    """The regions ride the targets through the model's resize and padding into the RPN: a region
    over the whole image turns every background anchor inside the image into an ignored one."""
    cfg = small_config(shapes_dir, "model.rpn.ignore_iof=0.3")
    torch.manual_seed(0)
    model = cfg.model.build().train()
    image = torch.rand(3, 96, 128)
    boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0]])
    seen = {}
    assign = model.rpn.assign

    def spy(anchors, gt, sizes):
        seen["gt"], seen["anchors"], seen["size"] = gt, anchors, sizes.resized[0]
        matched, labels = assign(anchors, gt, sizes)
        seen["labels"] = labels
        return matched, labels
    model.rpn.assign = spy
    everywhere = torch.tensor([[0.0, 0.0, 128.0, 96.0]])
    losses = model([image], [{"boxes": boxes, "labels": torch.tensor([1]), "ignore_boxes": everywhere}])
    assert all(torch.isfinite(v) for v in losses.values())
    scale = seen["gt"].boxes[0, 0, 2].item() / 50.0  # the model's resize, which moved the region alike
    assert seen["gt"].ignore_boxes[0, 0].tolist() == pytest.approx([0.0, 0.0, 128.0 * scale, 96.0 * scale])
    labels, anchors, (height, width) = seen["labels"][0], seen["anchors"], seen["size"]
    inside = (anchors[:, :2] >= 0).all(1) & (anchors[:, 2] <= width) & (anchors[:, 3] <= height)
    assert inside.sum() > 100 and (labels[inside] == FOREGROUND).any()
    assert not (labels[inside] == BACKGROUND).any()

    with pytest.raises(ValueError, match=r"target 0: ignore_boxes have shape \[4\], expected \[R, 4\]"):
        model([image], [{"boxes": boxes, "labels": torch.tensor([1]), "ignore_boxes": everywhere[0]}])


def test_scale_jitter_and_crops_move_regions_with_the_boxes() -> None:
    from simpledet.data.rand_resize_crop import crop_sample, resize_sample
    from simpledet.data.scale_jitter import jitter_sample

    image = torch.zeros(3, 100, 200)
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]), "labels": torch.tensor([1]),
              "ignore_boxes": torch.tensor([[100.0, 20.0, 180.0, 90.0], [0.0, 0.0, 4.0, 4.0]])}
    # longer side 200 -> 100 (scale 0.5), then a 64 x 64 window at x offset int(0.5 * 36) = 18
    _, jittered = jitter_sample(image, target, size=64, scale_factor=100 / 64, offset_draws=(0.0, 0.5))
    assert jittered["boxes"].tolist() == [[0.0, 5.0, 7.0, 25.0]]
    assert jittered["ignore_boxes"].tolist() == [[32.0, 10.0, 64.0, 45.0]]  # the second one left the window
    _, resized = resize_sample(image, target, short=50, long=1000)
    assert resized["ignore_boxes"].tolist() == [[50.0, 10.0, 90.0, 45.0], [0.0, 0.0, 2.0, 2.0]]
    _, cropped = crop_sample(image, target, start_y=0, start_x=120, crop_h=100, crop_w=80)
    assert cropped["boxes"].shape == (0, 4)  # the box's centre is outside the window
    assert cropped["ignore_boxes"].tolist() == [[0.0, 20.0, 60.0, 90.0]]  # a region: kept where it overlaps
