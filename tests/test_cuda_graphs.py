"""train.cuda_graphs and model.input.fixed_canvas, as far as a CPU can check them.

The capture itself needs a GPU: bench/gpu_checks.py compares graphed training steps with eager
ones there (losses and gradients over three SGD steps, fp32 and fp16). Here: which models and
settings are refused, that anything but CUDA training runs the eager path unchanged, and the
fixed canvas's padded shapes."""

import copy
import logging

import pytest
import torch
from torch import nn

from simpledet import build_model, load_config
from simpledet.accel.cuda_graphs import PaddedForCapture, enable_cuda_graphs
from simpledet.accel.graph_cache import GraphCache
from simpledet.engine.trainer import Trainer
from simpledet.errors import UserError
from simpledet.modeling.preprocess import ImagePreprocessor, InputConfig
from tests.graph_standin import FakeGraphs, assert_graphed_step_equals_eager
from tests.helpers import QUICKSTART, small_config

CUDA = torch.device("cuda")  # only named: nothing below runs on a GPU


def quickstart_model(*overrides: str):
    torch.manual_seed(0)
    return build_model(load_config(QUICKSTART, list(overrides))).train()


def test_graphed_model_runs_eagerly_on_cpu_tensors_with_identical_losses():
    """enable_cuda_graphs only replaces the detector's dense_step on the instance; CPU tensors (and
    evaluation) take the eager path through the very same modules, so the losses are bit-identical."""
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
    assert graphed.dense_step.graphs == {}  # nothing captured from CPU tensors
    assert sum(p.numel() for p in graphed.parameters()) == sum(p.numel() for p in plain.parameters())
    assert graphed.state_dict().keys() == plain.state_dict().keys()  # checkpoints unchanged


def test_cuda_graphs_on_a_cpu_device_warns_and_leaves_the_model_alone(caplog):
    model = quickstart_model()
    with caplog.at_level(logging.WARNING):
        assert enable_cuda_graphs(model, 4, torch.device("cpu")) is False
    assert "dense_step" not in vars(model) and not model.roi_heads.__dict__.keys() & {"match_and_sample"}
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
    graphed = model.dense_step
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
    assert "dense_step" not in vars(trainer.model)
    trainer.train()
    assert (tmp_path / "run" / "model_final.safetensors").is_file()


def test_a_training_run_with_every_part_graphed_ends_with_the_eager_run_weights(tmp_path, shapes_dir, monkeypatch):
    """The trainer with train.cuda_graphs and a fixed canvas, the capture stood in: the captures
    happen inside the training loop (features once, the sampling once per padded size), and the
    run ends with the weights of the same run without graphs, bit for bit."""
    from safetensors.torch import load_file

    import simpledet.engine.trainer as trainer_module

    fake = FakeGraphs(monkeypatch)
    monkeypatch.setattr(trainer_module, "enable_cuda_graphs",
                        lambda model, n, device, **kw: enable_cuda_graphs(model, n, CUDA, **kw))
    weights = []
    for graphs in ("false", "true"):
        torch.manual_seed(0)
        cfg = small_config(shapes_dir, "train.max_iter=4", "model.input.fixed_canvas=true",
                           f"train.cuda_graphs={graphs}")
        Trainer(cfg, tmp_path / graphs).train()
        weights.append(load_file(tmp_path / graphs / "model_final.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert len(fake.captured) >= 3  # features, and at least one sampling and one box-head capture


def preprocessor(fixed_canvas: bool) -> ImagePreprocessor:
    return InputConfig(min_size=(96, 128), max_size=200, fixed_canvas=fixed_canvas).build()


@pytest.mark.parametrize("sizes, canvas", [
    ([(60, 80), (90, 100)], (128, 224)),    # landscape: (max short side, max long side), padded to 32
    ([(100, 50)], (224, 128)),              # portrait: transposed
    ([(60, 80), (100, 50)], (224, 224)),    # both in one batch: a square holds either
])
def test_fixed_canvas_pads_every_training_batch_to_the_largest_resize(sizes, canvas):
    pre = preprocessor(True).train()
    batch, image_sizes, _ = pre([torch.rand(3, h, w) for h, w in sizes])
    resized = image_sizes.resized
    assert tuple(batch.shape[-2:]) == canvas == image_sizes.padded
    assert all(h <= canvas[0] and w <= canvas[1] for h, w in resized)
    assert (batch[0, :, resized[0][0]:, :] == 0).all()  # the canvas beyond the image is padding


def test_fixed_canvas_leaves_evaluation_and_the_default_alone():
    images = [torch.rand(3, 60, 80)]
    fixed_eval, _, _ = preprocessor(True).eval()(images)
    default_train, train_sizes, _ = preprocessor(False).train()(images)
    default_eval, _, _ = preprocessor(False).eval()(images)
    assert torch.equal(fixed_eval, default_eval)
    # the image itself (its short side drawn from min_size), padded to 32, not the fixed canvas
    (height, width), = train_sizes.resized
    assert min(height, width) in (96, 128)
    assert tuple(default_train.shape[-2:]) == (-(-height // 32) * 32, -(-width // 32) * 32)


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
    captured = {id(p) for p in graphed.dense_step.eager.parameters()}
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
    captured = {id(p) for p in model.dense_step.eager.parameters()}
    assert all(id(p) in captured for p in model.rpn.head.parameters())
    assert all(id(p) in captured for p in model.backbone.parameters())
    assert not any(id(p) in captured for p in model.roi_heads.parameters())  # data-dependent shapes: eager
    # the captured part hands the RPN its levels already concatenated, anchor order kept
    batch = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        features, (logits, deltas) = model.dense_step.eager(batch)
        level_logits, level_deltas = model.rpn.head([features[name] for name in model.rpn.in_features])
    assert torch.equal(logits, torch.cat(level_logits, 1)) and torch.equal(deltas, torch.cat(level_deltas, 1))
    assert logits.shape[1] == len(model.rpn.anchor_generator(
        (64, 96), [features[name].shape[-2:] for name in model.rpn.in_features], torch.device("cpu")).all)


def quickstart_config(name: str, *overrides: str):
    from tests.helpers import REPO

    return load_config(REPO / "configs/quickstart" / name, list(overrides))


@pytest.mark.parametrize("name, beta", [("faster_r18_fpn_shapes.py", "model.roi_heads.box_loss_beta=0.5"),
                                        ("mask_r18_fpn_shapes.py", "model.roi_heads.box_loss_beta=0.5"),
                                        ("cascade_r18_fpn_shapes.py", "model.roi_heads.stage.box_loss_beta=0.5")])
def test_the_box_head_and_its_losses_are_graphed_apart_and_the_eager_path_is_unchanged(name, beta):
    """train.cuda_graph_heads: each R-CNN stage's sampling, and its 2MLP head with predictor and
    losses, form graphed parts of their own (Faster, Mask and each stage of Cascade R-CNN); on
    CPU tensors they run eagerly, and losses and gradients are those of the plain model, bit for
    bit."""
    torch.manual_seed(0)
    plain = build_model(quickstart_config(name, beta)).train()
    graphed = copy.deepcopy(plain)
    assert enable_cuda_graphs(graphed, 2, CUDA)
    stages = graphed.rcnn_stages()
    for heads in stages:
        assert isinstance(heads.match_and_sample, PaddedForCapture)
        sampling = heads.match_and_sample.runner
        assert isinstance(sampling, GraphCache) and sampling.mode_from is heads and not sampling.with_grad
        assert not list(sampling.eager.parameters())
        part = heads.box_head_losses
        assert isinstance(part, GraphCache) and part.mode_from is heads.box_head and part.with_grad
        assert ({id(p) for p in part.eager.parameters()}
                == {id(p) for p in [*heads.box_head.parameters(), *heads.box_predictor.parameters()]})
    assert graphed.state_dict().keys() == plain.state_dict().keys()  # checkpoints unchanged

    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 96)]
    targets = [{"boxes": torch.tensor([[5.0, 6, 60, 70], [30, 20, 90, 80]]), "labels": torch.tensor([1, 2]),
                "masks": torch.zeros(2, *img.shape[-2:], dtype=torch.uint8).index_fill_(1, torch.arange(10, 60), 1)}
               for img in images]
    got = assert_graphed_step_equals_eager(plain, graphed, images, targets)
    assert any(key.startswith("loss_box") for key in got)
    for heads in stages:  # nothing captured from CPU tensors
        assert heads.box_head_losses.graphs == {} and heads.match_and_sample.runner.graphs == {}


@pytest.mark.parametrize("name, overrides, sampling, box_head", [
    ("faster_r18_fpn_shapes.py", ["train.cuda_graph_heads=false"], False, False),  # switched off
    ("faster_r18c4_shapes.py", [], True, False),      # a stage-5 head stays eager; its sampling does not
    ("tridentnet_r18c4_shapes.py", [], True, True),   # (this small TridentNet has a 2MLP head)
])
def test_which_parts_of_the_heads_are_graphed(name, overrides, sampling, box_head):
    cfg = quickstart_config(name, *overrides)
    model = build_model(cfg).train()
    assert enable_cuda_graphs(model, 2, CUDA, heads=cfg.train.cuda_graph_heads)
    assert ("match_and_sample" in vars(model.roi_heads)) == sampling
    assert ("box_head_losses" in vars(model.roi_heads)) == box_head


def test_graph_cache_captures_once_per_input_signature_up_to_its_limit(monkeypatch):
    fake = FakeGraphs(monkeypatch)
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    cache = GraphCache(lambda: nn.Sequential(*head), head, max_shapes=3, what="test head")
    x = torch.rand(5, 4, requires_grad=True)
    once = copy.deepcopy(head)
    expected = once(x)
    got = cache(x)  # captured (three warm-up passes), then run once
    assert torch.equal(got, expected) and fake.captured == [[(5, 4)]] and len(cache.graphs) == 1
    # the warm-up passes leave no trace in BatchNorm's running statistics: only the call's own
    assert torch.equal(head[1].running_mean, once[1].running_mean)
    cache(torch.rand(5, 4))        # the same signature: replayed, not captured again
    cache(torch.rand(4, 5).t())    # other strides: another signature
    cache(torch.rand(6, 4))        # another shape: captured too
    cache(torch.rand(7, 4))        # past max_shapes: eager
    assert fake.captured == [[(5, 4)], [(5, 4)], [(6, 4)]] and len(cache.graphs) == 3
    head.eval()
    cache(torch.rand(8, 4))        # evaluation: eager
    with torch.no_grad():
        head.train()
        cache(torch.rand(9, 4))    # no gradients: eager
    assert len(fake.captured) == 3


def test_graph_cache_drops_its_graphs_when_frozen_bn_statistics_change(monkeypatch):
    from simpledet.modeling.norm import FrozenBatchNorm2d

    fake = FakeGraphs(monkeypatch)
    conv = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4))
    cache = GraphCache(lambda: nn.Sequential(*conv), conv, max_shapes=1, what="test")
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    cache(x)
    cache(x)
    assert len(fake.captured) == 1
    with torch.no_grad():
        conv[1].running_var.mul_(2.0)  # a checkpoint loaded
    cache(x)
    assert len(fake.captured) == 2 and len(cache.graphs) == 1


SMALL_RETINANET = ("../torchvision/retinanet_resnet50_fpn.py", "model.input.min_size=(96,)", "model.input.max_size=128")


@pytest.mark.parametrize("config, amp", [(("faster_r18_fpn_shapes.py",), False), (("mask_r18_fpn_shapes.py",), False),
                                         (("cascade_r18_fpn_shapes.py",), False),
                                         (("tridentnet_r18c4_shapes.py",), False), (SMALL_RETINANET, False),
                                         (("faster_r18_fpn_shapes.py",), True)])
def test_a_training_step_through_every_graphed_part_equals_the_eager_step(monkeypatch, config, amp):
    """With the capture stood in (tests/graph_standin.py), a training step goes through every
    GraphCache as a CUDA step would (features with gradients, each R-CNN stage's sampling
    without, its box head with; RetinaNet's subnets with the features): one capture each, nothing
    in them that a capture refuses, and the plain model's losses and gradients, bit for bit, in
    fp32 and under (bf16) autocast."""
    fake = FakeGraphs(monkeypatch)
    torch.manual_seed(0)
    plain = build_model(quickstart_config(*config)).train()
    graphed = copy.deepcopy(plain)
    assert enable_cuda_graphs(graphed, 2, CUDA)
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[5.0, 6, 60, 70], [30, 20, 90, 80]]), "labels": torch.tensor([1, 2]),
                "masks": torch.zeros(2, 96, 128, dtype=torch.uint8).index_fill_(1, torch.arange(10, 60), 1)}
               for _ in images]
    for step in range(2):
        expected, got = [], []
        for model, out in ((plain, expected), (graphed, got)):
            torch.manual_seed(step)
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                losses = model(images, targets)
            sum(losses.values()).backward()
            out.extend([losses, [p.grad for p in model.parameters() if p.requires_grad]])
        for key in expected[0]:
            assert torch.equal(expected[0][key], got[0][key]), key
        assert all(a is not None and torch.equal(a, b) for a, b in zip(expected[1], got[1]))
    stages = graphed.rcnn_stages()
    assert len(stages) == (0 if config == SMALL_RETINANET else 3 if "cascade" in config[0] else 1)
    assert len(graphed.dense_step.graphs) == 1
    assert all(len(s.match_and_sample.runner.graphs) >= 1 and len(s.box_head_losses.graphs) >= 1 for s in stages)
    assert len(fake.captured) == 1 + sum(len(s.match_and_sample.runner.graphs) + len(s.box_head_losses.graphs)
                                         for s in stages)


def test_a_part_whose_capture_cuda_refuses_trains_on_eagerly(monkeypatch, caplog):
    FakeGraphs(monkeypatch)
    calls = []

    def refuse(module, sample_args, pool=None, capture_error_mode="global"):
        calls.append(1)
        for _ in range(3):  # warm-up passes, then CUDA refuses the capture
            module(*sample_args)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", refuse)
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    once = copy.deepcopy(head)
    cache = GraphCache(lambda: nn.Sequential(*head), head, max_shapes=2, what="test head")
    x = torch.rand(5, 4)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(cache(x), once(x))
    assert "could not capture the test head" in caplog.text and "runs eagerly" in caplog.text
    assert torch.equal(head[1].running_mean, once[1].running_mean)  # the warm-up left no trace
    cache(torch.rand(6, 4))  # another signature: not tried again
    assert len(calls) == 1 and cache.graphs == {}


def test_the_gpu_checks_of_the_graphs_run_on_the_cpu_with_the_capture_stood_in(monkeypatch, capsys):
    """bench/gpu_checks.py's graph checks, run here with the capture stood in (tests/graph_standin.py)
    and the CPU for the device: GPU time is scarce, and a script broken on the way there (or a
    model bug it trips over) should show here first. On the CPU the stand-in replays compute what
    the eager model computes, so they must pass."""
    import sys

    import simpledet.accel.cuda_graphs as cuda_graphs
    from tests.helpers import REPO

    FakeGraphs(monkeypatch)
    enable = cuda_graphs.enable_cuda_graphs
    monkeypatch.setattr(cuda_graphs, "enable_cuda_graphs",
                        lambda model, n, device, **kw: enable(model, n, CUDA, **kw))
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    sys.modules.pop("gpu_checks", None)
    import gpu_checks

    cfg = load_config(REPO / "configs/torchvision/fasterrcnn_resnet50_fpn.py",
                      ["model.input.min_size=(320,)", "model.input.max_size=448", "model.backbone.fuse_frozen_bn=true"])
    assert gpu_checks.compare_graphed_with_eager(cfg, "fasterrcnn", False, torch.device("cpu")) == 0
    assert gpu_checks.check_graphed_sampling(torch.device("cpu")) == 0
    printed = capsys.readouterr().out
    assert "cuda graphs, fasterrcnn (fp32) == eager" in printed and "R-CNN sampling graph == eager" in printed
