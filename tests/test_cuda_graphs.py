"""train.cuda_graphs and model.input.fixed_canvas, as far as a CPU can check them.

The capture itself needs a GPU: bench/gpu_checks.py compares graphed training steps with eager
ones there (losses and gradients over three SGD steps, fp32 and fp16). Here: which models and
settings are refused, that anything but CUDA training runs the eager path unchanged, and the
fixed canvas's padded shapes."""

import logging

import pytest
import torch

from simpledet import build_model, load_config
from simpledet.engine.trainer import Trainer
from simpledet.errors import UserError
from simpledet.modeling.graphed_features import enable_cuda_graphs
from simpledet.modeling.preprocess import ImagePreprocessor, InputConfig
from tests.helpers import QUICKSTART, small_config

CUDA = torch.device("cuda")  # only named: nothing below runs on a GPU


def quickstart_model(*overrides: str):
    torch.manual_seed(0)
    return build_model(load_config(QUICKSTART, list(overrides))).train()


def test_graphed_model_runs_eagerly_on_cpu_tensors_with_identical_losses():
    """enable_cuda_graphs only swaps in GraphedFeatures; CPU tensors (and evaluation) take the
    eager path through the very same modules, so the losses are bit-identical."""
    plain = quickstart_model()
    graphed = quickstart_model()
    assert enable_cuda_graphs(graphed, 2, CUDA) is True
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 96)]
    targets = [{"boxes": torch.tensor([[5.0, 6, 60, 70]]), "labels": torch.tensor([1])} for _ in images]
    torch.manual_seed(1)
    expected = plain(images, targets)
    torch.manual_seed(1)
    got = graphed(images, targets)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert graphed.graphed_features.graphs == {}  # nothing captured from CPU tensors
    assert sum(p.numel() for p in graphed.parameters()) == sum(p.numel() for p in plain.parameters())
    assert graphed.state_dict().keys() == plain.state_dict().keys()  # checkpoints unchanged


def test_cuda_graphs_on_a_cpu_device_warns_and_leaves_the_model_alone(caplog):
    model = quickstart_model()
    with caplog.at_level(logging.WARNING):
        assert enable_cuda_graphs(model, 4, torch.device("cpu")) is False
    assert model.graphed_features is None
    assert "needs a GPU" in caplog.text


def test_synchronised_batch_norm_is_refused_by_name():
    model = quickstart_model("model.backbone.norm=syncbn")
    with pytest.raises(UserError, match=r"SyncBatchNorm2d at .* all-reduces across processes"):
        enable_cuda_graphs(model, 4, CUDA)
    for device in (CUDA, torch.device("cpu")):  # a bad setting is an error on any machine
        with pytest.raises(UserError, match="cuda_graph_shapes must be at least 1"):
            enable_cuda_graphs(quickstart_model(), 0, device)


def test_a_change_to_frozen_bn_statistics_is_seen_and_moving_the_model_too():
    """The graphs read frozen BN's cached folds; the state they are checked against changes when
    a statistic is written (a checkpoint loaded) and when the model moves (new buffers)."""
    from tests.helpers import REPO

    model = build_model(load_config(REPO / "configs/torchvision/fasterrcnn_resnet50_fpn.py")).train()
    enable_cuda_graphs(model, 2, CUDA)
    graphed = model.graphed_features
    assert len(graphed.frozen_bns) > 50
    before = graphed._frozen_bn_state()
    assert graphed._frozen_bn_state() == before  # nothing changed: the graphs stay
    with torch.no_grad():
        model.backbone.bn1.running_var.mul_(2.0)
    written = graphed._frozen_bn_state()
    assert written != before
    model.double()  # replaces every buffer
    assert graphed._frozen_bn_state() != written


def test_trainer_refuses_cuda_graphs_with_a_compiled_backbone(tmp_path, shapes_dir):
    cfg = small_config(shapes_dir, "train.max_iter=1", "train.cuda_graphs=true", "train.compile_backbone=true")
    with pytest.raises(UserError, match="train.cuda_graphs does not combine with train.compile_backbone"):
        Trainer(cfg, tmp_path / "run")


def test_trainer_with_cuda_graphs_trains_on_cpu_eagerly(tmp_path, shapes_dir):
    trainer = Trainer(small_config(shapes_dir, "train.max_iter=1", "train.cuda_graphs=true"), tmp_path / "run")
    assert trainer.model.graphed_features is None
    trainer.train()
    assert (tmp_path / "run" / "model_final.safetensors").is_file()


def preprocessor(fixed_canvas: bool) -> ImagePreprocessor:
    return InputConfig(min_size=(96, 128), max_size=200, fixed_canvas=fixed_canvas).build()


@pytest.mark.parametrize("sizes, canvas", [
    ([(60, 80), (90, 100)], (128, 224)),    # landscape: (max short side, max long side), padded to 32
    ([(100, 50)], (224, 128)),              # portrait: transposed
    ([(60, 80), (100, 50)], (224, 224)),    # both in one batch: a square holds either
])
def test_fixed_canvas_pads_every_training_batch_to_the_largest_resize(sizes, canvas):
    pre = preprocessor(True).train()
    batch, resized, _ = pre([torch.rand(3, h, w) for h, w in sizes])
    assert tuple(batch.shape[-2:]) == canvas
    assert all(h <= canvas[0] and w <= canvas[1] for h, w in resized)
    assert (batch[0, :, resized[0][0]:, :] == 0).all()  # the canvas beyond the image is padding


def test_fixed_canvas_leaves_evaluation_and_the_default_alone():
    images = [torch.rand(3, 60, 80)]
    fixed_eval, _, _ = preprocessor(True).eval()(images)
    default_train, _, _ = preprocessor(False).train()(images)
    default_eval, _, _ = preprocessor(False).eval()(images)
    assert torch.equal(fixed_eval, default_eval)
    assert tuple(default_train.shape[-2:]) == (96, 128)  # the image itself, padded to 32


def test_retinanet_subnets_join_the_captured_part_and_the_eager_path_is_unchanged():
    """For RetinaNet the captured part includes its classification and box subnets (static
    shapes); on CPU tensors the graphed model runs them eagerly, in the same order, so the
    losses are bit-identical."""
    from tests.helpers import REPO

    overrides = ["model.input.min_size=(96,)", "model.input.max_size=128"]
    config = REPO / "configs/torchvision/retinanet_resnet50_fpn.py"
    torch.manual_seed(0)
    plain = build_model(load_config(config, overrides)).train()
    torch.manual_seed(0)
    graphed = build_model(load_config(config, overrides)).train()
    assert enable_cuda_graphs(graphed, 2, CUDA)
    captured = {id(p) for p in graphed.graphed_features.eager.parameters()}
    assert all(id(p) in captured for p in graphed.head.cls_subnet.parameters())
    assert all(id(p) in captured for p in graphed.head.box_subnet.parameters())
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[5.0, 6, 60, 70]]), "labels": torch.tensor([1])} for _ in images]
    expected, got = plain(images, targets), graphed(images, targets)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_the_rpn_head_joins_the_captured_part():
    model = quickstart_model()
    enable_cuda_graphs(model, 2, CUDA)
    captured = {id(p) for p in model.graphed_features.eager.parameters()}
    assert all(id(p) in captured for p in model.rpn.head.parameters())
    assert all(id(p) in captured for p in model.backbone.parameters())
    assert not any(id(p) in captured for p in model.roi_heads.parameters())  # data-dependent shapes: eager
    # the captured part hands the RPN its levels already concatenated, anchor order kept
    batch = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        features, (logits, deltas) = model.graphed_features.eager(batch)
        level_logits, level_deltas = model.rpn.head([features[name] for name in model.rpn.in_features])
    assert torch.equal(logits, torch.cat(level_logits, 1)) and torch.equal(deltas, torch.cat(level_deltas, 1))
    assert logits.shape[1] == sum(len(a) for a in model.rpn.anchor_generator(
        (64, 96), [features[name].shape[-2:] for name in model.rpn.in_features], torch.device("cpu")))
