"""The heads' batched, synchronisation-free forms compute what the straightforward per-image,
boolean-indexed forms compute: the level-sorted RoIAlign against torchvision's
MultiScaleRoIAlign, the masked proposals with their NMS calls run at once against torchvision's
per-image filtering and batched_nms, and
the masked losses against indexing the sampled anchors / RoIs. A training step then waits on the
device only a handful of times (counted)."""

import collections
import threading

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.ops import MultiScaleRoIAlign, batched_nms, clip_boxes_to_image, remove_small_boxes

import simpledet.accel.concurrent_nms as nms_module
from simpledet import build_model
from simpledet.accel.concurrent_nms import concurrent_nms
from simpledet.modeling.anchors import Anchors
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.layers.roi_pooler import LevelSortedRoIAlign
from simpledet.structures.ground_truth import PaddedGroundTruth, pad_boxes
from simpledet.structures.image_sizes import ImageSizes

from .helpers import small_config


def random_boxes(n: int, size: float, generator: torch.Generator, min_side: float = 4.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = min_side + torch.rand(n, 2, generator=generator) * size * 0.5
    return torch.cat([xy, xy + wh], 1)


def test_level_sorted_roi_align_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    names = ["p2", "p3", "p4", "p5"]
    features = {n: torch.randn(2, 8, 64 // 2 ** i, 96 // 2 ** i, generator=g, requires_grad=True)
                for i, n in enumerate(names)}
    boxes = [random_boxes(40, 250, g, min_side=2.0), random_boxes(25, 250, g, min_side=60.0)]
    sizes = [(256, 384), (240, 380)]
    ours = LevelSortedRoIAlign(names, 7, 2)(features, boxes, sizes)
    reference = MultiScaleRoIAlign(names, 7, 2)(features, boxes, sizes)
    assert torch.equal(ours, reference)
    weights = torch.randn(ours.shape, generator=g)
    ours_grads = torch.autograd.grad((ours * weights).sum(), list(features.values()))
    reference_grads = torch.autograd.grad((reference * weights).sum(), list(features.values()))
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b)
    single = {"c4": features["p3"]}  # C4 heads: one level
    assert torch.equal(LevelSortedRoIAlign(["c4"], 7, 2)(single, boxes, sizes),
                       MultiScaleRoIAlign(["c4"], 7, 2)(single, boxes, sizes))


def reference_proposals(rpn, boxes, logits, per_level, image_sizes):
    """Per image: top-k per level, clip, drop small and low-scoring, torchvision's batched_nms by
    level, keep the best post_nms_top_n (the straightforward form)."""
    out = []
    for img_boxes, img_logits, size in zip(boxes, logits, image_sizes):
        idx, lvl, offset = [], [], 0
        for level, count in enumerate(per_level):
            k = min(rpn.pre_nms_top_n[rpn.training], count)
            idx.append(img_logits[offset:offset + count].topk(k).indices + offset)
            lvl.append(torch.full((k,), level))
            offset += count
        idx, lvl = torch.cat(idx), torch.cat(lvl)
        b, s = clip_boxes_to_image(img_boxes[idx], size), torch.sigmoid(img_logits[idx])
        keep = remove_small_boxes(b, rpn.min_size)
        b, s, lvl = b[keep], s[keep], lvl[keep]
        keep = torch.where(s >= rpn.score_thresh)[0]
        b, s, lvl = b[keep], s[keep], lvl[keep]
        keep = batched_nms(b, s, lvl, rpn.nms_thresh)[: rpn.post_nms_top_n[rpn.training]]
        out.append(b[keep])
    return out


@pytest.mark.parametrize("nms_each", ["in turn", "at once"])
def test_proposals_equal_filtering_and_per_image_batched_nms(nms_each):
    g = torch.Generator().manual_seed(1)
    kernels = {"nms_each": concurrent_nms} if nms_each == "at once" else {}
    rpn = RPNConfig(pre_nms_top_n_train=300, post_nms_top_n_train=150, min_size=3.0,
                    score_thresh=0.2).build(8, **kernels)
    per_level = [900, 400, 120]
    boxes = torch.stack([random_boxes(sum(per_level), 300, g, min_side=1.0) for _ in range(2)])
    boxes[0, :50] -= 40.0  # some boxes leave the image: clipped
    logits = torch.randn(2, sum(per_level), generator=g)
    sizes = [(280, 300), (300, 260)]
    ours = rpn.select_proposals(boxes.clone(), logits, per_level, ImageSizes.of((320, 320), sizes))
    expected = reference_proposals(rpn, boxes, logits, per_level, sizes)
    assert [len(p) for p in ours] == [len(p) for p in expected] and all(len(p) > 20 for p in ours)
    for a, b in zip(ours, expected):
        assert torch.equal(a, b)


def test_proposals_with_nan_and_infinite_boxes_equal_per_image_nms():
    """Boxes and scores that are NaN or infinite (an fp16 overflow) and boxes of zero size stay in
    the NMS calls, masked, and are dropped after them: the proposals are still exactly those of
    filtering first. min_size 0 and score_thresh 0, SimpleDet's settings, where only NaN is
    invalid."""
    g = torch.Generator().manual_seed(4)
    rpn = RPNConfig(pre_nms_top_n_train=200, post_nms_top_n_train=1000, min_size=0.0).build(8)
    per_level = [500, 150]
    boxes = torch.stack([random_boxes(sum(per_level), 200, g, min_side=1.0) for _ in range(3)])
    logits = torch.randn(3, sum(per_level), generator=g)
    logits[0, :40] += 5.0  # among the top-k
    boxes[0, :10] = float("nan")
    boxes[0, 10:20, 2:] = float("inf")  # clipped to the image
    boxes[1, :30, 2:] = boxes[1, :30, :2]  # zero width and height: valid at min_size 0
    logits[2, :25] = float("nan")
    sizes = [(190, 200), (200, 180), (170, 170)]
    ours = rpn.select_proposals(boxes.clone(), logits, per_level, ImageSizes.of((224, 224), sizes))
    expected = reference_proposals(rpn, boxes, logits, per_level, sizes)
    assert all(torch.isfinite(p).all() for p in ours) and all(len(p) > 50 for p in ours)
    assert [len(p) for p in ours] == [len(p) for p in expected]
    for a, b in zip(ours, expected):
        assert torch.equal(a, b)


def test_masked_rpn_losses_equal_the_indexed_ones():
    g = torch.Generator().manual_seed(2)
    rpn = RPNConfig(allowed_border=0.0).build(8)
    anchors = random_boxes(600, 200, g)
    logits = torch.randn(2, 600, generator=g)
    deltas = 0.3 * torch.randn(2, 600, 4, generator=g)
    targets = [{"boxes": random_boxes(n, 200, g, min_side=20.0), "labels": torch.ones(n, dtype=torch.int64)}
               for n in (3, 5)]
    sizes = [(200, 200), (190, 210)]
    torch.manual_seed(0)
    losses = rpn.losses((logits, deltas), Anchors.of([anchors]), PaddedGroundTruth.of(targets, anchors.device),
                        ImageSizes.of((224, 224), sizes))

    torch.manual_seed(0)  # the same sampling draws
    gt, gt_valid = pad_boxes([t["boxes"] for t in targets], anchors.device)
    from torchvision.ops import box_iou
    matched, labels = rpn.matcher(torch.stack([box_iou(b, anchors) for b in gt]), gt_valid)
    labels[~rpn.inside_image(anchors, sizes)] = -1
    fg, bg = rpn.sampler.sample(labels)
    sampled = fg | bg
    n = sampled.sum()
    cls = F.binary_cross_entropy_with_logits(logits[sampled], fg[sampled].float(), reduction="sum") / n
    matched_boxes = torch.gather(gt, 1, matched[..., None].expand(-1, -1, 4))
    target = rpn.box_coder.encode(anchors[None].expand_as(matched_boxes)[fg], matched_boxes[fg])
    box = F.smooth_l1_loss(deltas[fg], target, beta=rpn.box_loss_beta, reduction="sum") / n
    assert fg.sum() >= 3  # foreground anchors exist, so the box loss is exercised
    torch.testing.assert_close(losses["loss_rpn_cls"], cls)
    torch.testing.assert_close(losses["loss_rpn_box"], box)


def test_masked_roi_losses_equal_the_indexed_ones():
    from simpledet.modeling.heads.roi_heads import box_losses

    g = torch.Generator().manual_seed(3)
    classes = torch.randint(0, 6, (64,), generator=g)
    logits, deltas = torch.randn(64, 6, generator=g), torch.randn(64, 24, generator=g)
    box_targets = torch.randn(64, 4, generator=g)
    loss_cls, loss_box = box_losses(logits, deltas, classes, box_targets, beta=1.0)
    fg = torch.where(classes > 0)[0]
    picked = deltas.view(64, 6, 4)[fg, classes[fg]]
    box = F.smooth_l1_loss(picked, box_targets[fg], beta=1.0, reduction="sum") / 64
    assert len(fg) > 10
    torch.testing.assert_close(loss_cls, F.cross_entropy(logits, classes))
    torch.testing.assert_close(loss_box, box)


class SyncCounter(TorchDispatchMode):
    """Counts the operators that make the host wait for a GPU: nonzero, item (_local_scalar_dense),
    boolean-mask indexing (a nonzero inside), bincount (reads its input's min and max), NMS (its
    output's size); and Tensor.tolist calls, which a CPU run does not dispatch. NMS runs in pool
    threads, where a dispatch mode does not look: its calls are counted, with their threads, at
    concurrent_nms's call of torchvision's nms."""

    WAITING = ("aten.nonzero.default", "aten._local_scalar_dense.default", "aten.bincount.default",
               "torchvision.nms.default")

    def __init__(self, monkeypatch):
        super().__init__()
        self.counts = collections.Counter()
        self.nms_threads = set()
        tolist = torch.Tensor.tolist

        def counted_tolist(tensor):
            self.counts["Tensor.tolist"] += 1
            return tolist(tensor)

        def counted_nms(*args):
            self.counts["nms"] += 1
            self.nms_threads.add(threading.get_ident())
            return torchvision.ops.nms(*args)

        monkeypatch.setattr(torch.Tensor, "tolist", counted_tolist)
        monkeypatch.setattr(nms_module, "nms", counted_nms)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in self.WAITING:
            self.counts[name] += 1
        if name in ("aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default") and any(
                getattr(t, "dtype", None) == torch.bool for t in args[1]):
            self.counts[name + " (boolean mask)"] += 1
        return func(*args, **(kwargs or {}))


def waits_of_a_training_step(model, images, targets, monkeypatch, trainer: bool = True) -> SyncCounter:
    """The waits of one forward and backward, counted on 2 threads (the NMS pool's size on a GPU
    machine). trainer: as `simpledet train` runs the step, which checks its targets on the CPU
    before they move and turns the model's value checks off; else as a user's direct call."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    model.check_input_values = not trainer
    try:
        with SyncCounter(monkeypatch) as counter:
            losses = model(images, targets)
            sum(losses.values()).backward()
    finally:
        torch.set_num_threads(threads)
        model.check_input_values = True
    return counter


def test_a_faster_rcnn_training_step_waits_for_nms_and_three_counts(shapes_dir, monkeypatch):
    """The forward and backward of a training step wait for the device at the NMS calls (one per
    image and RPN level, run at once in pool threads) and three times more: the proposals
    per image, the sampled RoIs per image and the RoIs per FPN level. Boolean indexing in the
    heads would make over forty waits, and bincount and nonzero eight more."""
    torch.manual_seed(0)
    model = build_model(small_config(shapes_dir)).train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5.0, 50.0, 40.0], [30.0, 30.0, 80.0, 110.0]]),
                "labels": torch.tensor([2, 1])}]
    counter = waits_of_a_training_step(model, images, targets, monkeypatch)
    levels = len(model.rpn.in_features)
    assert levels > 2 and counter.counts == {"nms": levels * len(images), "Tensor.tolist": 3}, counter.counts
    assert threading.get_ident() not in counter.nms_threads  # in the pool (tests/test_concurrent_nms.py)
    # called directly, the model checks its inputs' values too: one wait more, for all of them
    trainer_counts = dict(counter.counts)
    direct = waits_of_a_training_step(model, images, targets, monkeypatch, trainer=False)
    assert direct.counts == {**trainer_counts, "aten._local_scalar_dense.default": 1}, direct.counts


def test_inside_image_by_hand():
    """SimpleDet's allowed_border rule: an anchor is used only if it lies within the image (plus
    the border), each image with its own size."""
    rpn = RPNConfig(allowed_border=2.0).build(8)
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0],     # inside both images
                            [-3.0, 0.0, 10.0, 10.0],    # 3 px left of the border: out
                            [-2.0, -2.0, 10.0, 10.0],   # on the border: in
                            [0.0, 0.0, 21.5, 10.0],     # right edge: in for width 20 (< 22), out for 18
                            [0.0, 0.0, 10.0, 40.0]])    # bottom edge: out for height 30, in for 40
    inside = rpn.inside_image(anchors, [(30, 20), (40, 18)])
    assert inside.tolist() == [[True, False, True, True, False], [True, False, True, False, True]]


def test_retinanet_losses_never_wait(monkeypatch):
    """RetinaNet's training losses are masked sums: no operator that waits for a GPU."""
    from simpledet.modeling.heads.retina_head import RetinaHeadConfig

    g = torch.Generator().manual_seed(6)
    head = RetinaHeadConfig(in_features=("p3",), anchor_sizes=((32,),), aspect_ratios=(1.0,)).build(8, 3)
    anchors = random_boxes(300, 150, g, min_side=10.0)
    logits = torch.randn(2, 300, 3, generator=g, requires_grad=True)
    deltas = torch.randn(2, 300, 4, generator=g, requires_grad=True)
    targets = [{"boxes": random_boxes(3, 150, g, min_side=20.0), "labels": torch.tensor([1, 2, 3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    with SyncCounter(monkeypatch) as counter:
        losses = head.losses(([logits], [deltas]), Anchors.of([anchors]), PaddedGroundTruth.of(targets, anchors.device))
        sum(losses.values()).backward()
    assert counter.counts == {} and losses["loss_box"] > 0, counter.counts


@pytest.mark.parametrize("config", ["faster_r18_fpn_shapes.py", "cascade_r18_fpn_shapes.py",
                                    "tridentnet_r18c4_shapes.py"])
def test_ground_truth_is_padded_once_per_training_step(shapes_dir, monkeypatch, config):
    """The detector pads the ground truth once for the RPN and every R-CNN stage: padding again
    in an R-CNN stage would come after the RPN's NMS, where a GPU step waits for the host. The
    losses are those of heads that pad for themselves."""
    from .conftest import REPO

    made = []
    of = PaddedGroundTruth.of.__func__
    monkeypatch.setattr(PaddedGroundTruth, "of", classmethod(lambda cls, *a: made.append(1) or of(cls, *a)))
    model = build_model(small_config(shapes_dir, config=REPO / "configs/quickstart" / config)).train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5.0, 50.0, 40.0], [30.0, 30.0, 80.0, 110.0]]),
                "labels": torch.tensor([2, 1])}]
    torch.manual_seed(0)
    losses = model(images, targets)
    assert len(made) == 1
    if hasattr(model, "branch_targets"):
        return  # TridentNet's per-branch targets are the detector's own: the count is what this pins

    # the same step with the R-CNN heads padding for themselves: the same random draws, the same losses
    batch, sizes, resized_targets = model.preprocess(images, targets)
    torch.manual_seed(0)
    features, outputs = model.dense_step(batch)
    anchors = model.rpn.anchors(features, sizes)
    expected = model.rpn.losses(outputs, anchors, PaddedGroundTruth.of(resized_targets, batch.device), sizes)
    proposals = model.rpn.postprocess(outputs, anchors, sizes)
    expected.update(model.roi_heads(features, proposals, sizes, resized_targets)[1])
    assert losses.keys() == expected.keys()
    for key in losses:
        assert torch.equal(losses[key], expected[key]), key


@pytest.mark.parametrize("config", ["configs/quickstart/faster_r18_fpn_shapes.py",
                                    "configs/quickstart/mask_r18_fpn_shapes.py",
                                    "configs/quickstart/cascade_r18_fpn_shapes.py",
                                    "configs/torchvision/retinanet_resnet50_fpn.py"])
def test_a_batch_without_any_box_trains_on_background(shapes_dir, config):
    """torchvision's interface takes images without objects (boxes of shape (0, 4)). A batch of
    only such images has nothing to pad: every candidate is background, the box losses are zero
    and the gradients finite."""
    from .conftest import REPO

    overrides = ["model.input.min_size=(96,)", "model.input.max_size=128"] if "retinanet" in config else []
    model = build_model(small_config(shapes_dir, *overrides, config=REPO / config)).train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 96)]
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, *img.shape[-2:], dtype=torch.uint8)} for img in images]
    torch.manual_seed(0)
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert all(v == 0 for k, v in losses.items() if "box" in k or "mask" in k)
    assert all(v > 0 for k, v in losses.items() if "cls" in k)  # the background is still learnt
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    if hasattr(model, "roi_heads") and hasattr(model.roi_heads, "sample_proposals"):
        proposals = [torch.tensor([[0.0, 0, 50, 50], [10, 10, 90, 60]])] * 2
        classes = model.roi_heads.sample_proposals(proposals, targets).classes
        assert len(classes) == 4 and (classes == 0).all()


@pytest.mark.parametrize("config", ["configs/quickstart/faster_r18_fpn_shapes.py",
                                    "configs/quickstart/mask_r18_fpn_shapes.py",
                                    "configs/quickstart/cascade_r18_fpn_shapes.py",
                                    "configs/quickstart/faster_r18c4_shapes.py"])
def test_no_proposal_at_all_gives_no_detection(shapes_dir, config):
    """An RPN can return no proposal for any image (all its boxes degenerate, or non-finite
    weights): the R-CNN stage then detects nothing, where the box decoder could not tell how
    many boxes each of zero rows held."""
    from .conftest import REPO

    model = build_model(small_config(shapes_dir, config=REPO / config)).eval()
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 96)]
    model.rpn.select_proposals = lambda boxes, *args: [boxes.new_zeros(0, 4) for _ in boxes]
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        assert det["boxes"].shape == (0, 4) and len(det["scores"]) == 0 and len(det["labels"]) == 0
        assert "masks" not in det or len(det["masks"]) == 0


def test_sampled_proposals_targets_by_hand(shapes_dir):
    """Two images, few enough candidates that all are sampled: each foreground proposal gets its
    own image's best ground truth (class and encoded box), background gets class 0 and zeros."""
    heads = build_model(small_config(shapes_dir)).train().roi_heads
    targets = [{"boxes": torch.tensor([[0.0, 0, 100, 100], [200, 200, 260, 300]]), "labels": torch.tensor([1, 2])},
               {"boxes": torch.tensor([[50.0, 50, 150, 120]]), "labels": torch.tensor([3])}]
    proposals = [torch.tensor([[205.0, 195, 262, 298], [400, 400, 450, 450], [5, 0, 100, 104]]),
                 torch.tensor([[52.0, 48, 150, 125], [0, 0, 20, 20]])]
    rois = heads.sample_proposals(proposals, targets)
    sampled, classes, box_targets = rois.boxes, rois.classes, rois.box_targets
    # every candidate sampled (proposals and the ground truth added to them), so pair them by box
    expected = {(0, 0): 2, (0, 1): 0, (0, 2): 1, (1, 0): 3, (1, 1): 0}
    gt_of = {(0, 0): 1, (0, 2): 0, (1, 0): 0}
    offsets = [0, len(sampled[0])]
    for (image, i), cls in expected.items():
        row = offsets[image] + next(j for j, b in enumerate(sampled[image]) if torch.equal(b, proposals[image][i]))
        assert classes[row] == cls
        if cls:
            goal = heads.box_coder.encode(proposals[image][i:i + 1], targets[image]["boxes"][gt_of[(image, i)]][None])
            torch.testing.assert_close(box_targets[row], goal[0])
            assert rois.matched_gt[row] == gt_of[(image, i)]
        else:
            assert not box_targets[row].any()
    assert [len(s) for s in sampled] == [5, 3]  # the ground truth joins as proposals


def test_padding_for_capture_samples_what_the_stage_samples():
    """An R-CNN stage's match_and_sample on ground truth and candidates padded further (as
    train.cuda_graphs pads them to a few sizes, accel.cuda_graphs.PaddedForCapture), with the
    same random priorities on the real rows: the same rows sampled with the same targets, no
    padding row sampled, and the outputs cut back to the candidates given."""
    from simpledet.accel.cuda_graphs import PaddedForCapture
    from simpledet.modeling.heads.roi_heads import RoIHeadsConfig

    g = torch.Generator().manual_seed(0)
    stage = RoIHeadsConfig(batch_size_per_image=32).build(8, 9)
    gt = PaddedGroundTruth.of([{"boxes": random_boxes(n, 300, g), "labels": torch.randint(1, 9, (n,), generator=g)}
                               for n in (3, 5)], torch.device("cpu"))
    boxes, valid = pad_boxes([random_boxes(n, 300, g) for n in (90, 70)], torch.device("cpu"))
    priority = torch.rand((2, *valid.shape), generator=g)
    inputs = (gt.boxes, gt.valid, gt.labels, boxes, valid, priority)
    expected = stage.match_and_sample(*inputs)

    seen = []

    def eager_on_padded(*padded):
        seen.append([tuple(t.shape) for t in padded])
        return stage.match_and_sample(*padded)

    got = PaddedForCapture(eager_on_padded)(*inputs)
    assert seen == [[(2, 8, 4), (2, 8), (2, 8), (2, 256, 4), (2, 256), (2, 2, 256)]]
    assert [t.shape for t in got] == [t.shape for t in expected]
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    sampled, per_image, _, classes, _ = got
    assert (per_image == 32).all() and (classes[sampled] > 0).sum() > 0 and ((classes > 0) <= sampled).all()


def test_true_indices_equal_boolean_indexing():
    from simpledet.accel.sync_free import true_indices

    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(n, generator=g) > 0.5 for n in (0, 1, 7, 40)] + [torch.zeros(5, dtype=torch.bool)]
    values = [torch.rand(len(m), 4, generator=g) for m in masks]
    for mask, value, index in zip(masks, values, true_indices(masks)):
        assert torch.equal(value[index], value[mask])
    assert true_indices([]) == []


def test_a_tridentnet_training_step_waits_once_per_filter_not_once_per_tensor(shapes_dir, monkeypatch):
    """Scale-aware training keeps each branch's objects (before the backbone) and proposals (after
    the NMS) in its range: one wait for all the branches and images at each of the two, where
    boolean indexing waited once per branch, image and tensor. The targets kept are those of
    boolean indexing."""
    from simpledet.modeling.detectors.tridentnet import in_range

    from .conftest import REPO

    torch.manual_seed(0)
    model = build_model(small_config(shapes_dir, config=REPO / "configs/quickstart/tridentnet_r18c4_shapes.py"))
    model.train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0], [0, 0, 120, 125]]), "labels": torch.tensor([1, 3])},
               {"boxes": torch.tensor([[5.0, 5.0, 20.0, 15.0], [30.0, 30.0, 80.0, 110.0]]),
                "labels": torch.tensor([2, 1])}]
    branches = model.backbone.active_branches
    got = model.branch_targets(targets, [1.0, 1.5], branches)
    expected = [(t["boxes"][m], t["labels"][m]) for b in branches for t, scale in zip(targets, [1.0, 1.5])
                for m in [in_range(t["boxes"], scale, *model.valid_ranges[b])]]
    assert len(got) == len(expected) == 3 * len(targets)
    assert all(torch.equal(t["boxes"], boxes) and torch.equal(t["labels"], labels)
               for t, (boxes, labels) in zip(got, expected))
    assert {len(t["boxes"]) for t in got} == {0, 1, 2}  # the ranges split these objects

    counter = waits_of_a_training_step(model, images, targets, monkeypatch)
    # branch targets, the RPN's per-image counts, the branch proposals, the sampled RoIs per image
    assert counter.counts == {"nms": 3 * len(images), "Tensor.tolist": 4}, counter.counts
