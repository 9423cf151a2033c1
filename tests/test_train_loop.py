"""The loop around the training step: evaluation during training (the best weights kept, patience),
TensorBoard's event files, the moving average of the weights, gradient accumulation and
train.cuda_graphs=auto. (A run with all of them killed and resumed: tests/test_resume.py.)"""

import io
import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator
from torch import nn

import simpledet.engine.trainer as trainer_module
from simpledet.accel.cuda_graphs import enable_cuda_graphs
from simpledet.cli import main
from simpledet.config import TrainConfig, apply_override, from_dict, load_config, to_dict
from simpledet.engine.ema import ModelEMA
from simpledet.engine.evaluator import STAT_NAMES
from simpledet.engine.trainer import Trainer, cuda_graphs_mode
from simpledet.engine.validation import ModelEvaluation
from simpledet.errors import UserError
from simpledet.modeling.norm import FrozenBatchNorm2d
from tests.graph_standin import FakeGraphs

from .helpers import QUICKSTART, shapes_overrides, small_config, small_val_overrides

# 64 px inputs: what is tested here is the loop, not what the model learns
SMALL_INPUT = ["model.input.min_size=(64,)", "model.input.max_size=96"]


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _events(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0, IMAGES: 0})  # 0: keep every event
    events.Reload()
    return events


# ------------------------------------------------------------------ evaluation during training
@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, shapes_dir):
    """Two iterations, each evaluated on 2 val images, TensorBoard on (the default)."""
    out = tmp_path_factory.mktemp("evaluated")
    overrides = [*shapes_overrides(shapes_dir), *small_val_overrides(shapes_dir, out), *SMALL_INPUT,
                 "train.batch_size=1", "train.max_iter=2", "train.log_every=1", "train.checkpoint_every=2",
                 "train.warmup_iters=1", "train.eval_every=1", "train.best_metric=AR100"]
    assert main(["train", str(QUICKSTART), "--out", str(out / "run"), *overrides]) == 0
    return out / "run", overrides


def test_evaluations_are_logged_and_the_best_weights_are_what_eval_scores(evaluated_run, tmp_path):
    run, overrides = evaluated_run
    records = _records(run)
    assert [(r["iteration"], "eval" in r) for r in records] == [(1, False), (1, True), (2, False), (2, True)]
    evaluations = {r["iteration"]: r["eval"] for r in records if "eval" in r}
    assert all(list(stats) == list(STAT_NAMES) for stats in evaluations.values())
    best_iteration = max(evaluations, key=lambda i: (evaluations[i]["AR100"], -i))  # the first of equals
    best = json.loads((run / "model_best.json").read_text())
    assert (best["metric"], best["value"], best["iteration"]) == (
        "AR100", evaluations[best_iteration]["AR100"], best_iteration)
    assert best["categories"] == ["circle", "square", "triangle", "cross"] and "config" in best
    # `simpledet eval` of model_best.safetensors: the stats recorded for its iteration
    assert main(["eval", str(QUICKSTART), "--weights", str(run / "model_best.safetensors"), "--out",
                 str(tmp_path), *overrides]) == 0
    scored = json.loads((tmp_path / "metrics.json").read_text())
    assert {name: scored[name] for name in STAT_NAMES} == pytest.approx(evaluations[best_iteration], abs=1e-12)


def test_evaluation_does_not_change_what_trains(evaluated_run, tmp_path):
    """Evaluating restores training's random streams and mode: the run ends with the weights of the
    same run without evaluation, bit for bit."""
    run, overrides = evaluated_run
    assert main(["train", str(QUICKSTART), "--out", str(tmp_path), *overrides, "train.eval_every=0",
                 "train.tensorboard=false"]) == 0
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "model_best.safetensors").exists()
    evaluated, plain = load_file(run / "model_final.safetensors"), load_file(tmp_path / "model_final.safetensors")
    assert evaluated.keys() == plain.keys() and all(torch.equal(evaluated[k], plain[k]) for k in plain)


def test_tensorboard_holds_the_logged_metrics_the_evaluations_and_pictures(evaluated_run, shapes_dir):
    run, _ = evaluated_run
    records = _records(run)
    events = _events(run / "tensorboard")
    logged = [r for r in records if "eval" not in r]
    for name in ("loss", "lr", "images_per_s", "loss_rpn_cls", "loss_box"):
        scalars = events.Scalars(f"train/{name}")
        assert [s.step for s in scalars] == [1, 2]
        # event files hold float32
        assert [s.value for s in scalars] == pytest.approx([r[name] for r in logged], rel=1e-6, abs=1e-9)
    for name in STAT_NAMES:
        scalars = events.Scalars(f"eval/{name}")
        assert [s.step for s in scalars] == [r["iteration"] for r in records if "eval" in r]
        assert [s.value for s in scalars] == pytest.approx([r["eval"][name] for r in records if "eval" in r],
                                                           rel=1e-6, abs=1e-9)
    pictures = sorted(events.Tags()["images"])
    val = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    assert pictures == sorted(f"predictions/{image['file_name']}" for image in val["images"][:2])
    for tag in pictures:
        shots = events.Images(tag)
        assert [shot.step for shot in shots] == [1, 2]
        with Image.open(shapes_dir / "val" / tag.split("/", 1)[1]) as original:
            expected = np.asarray(original.convert("RGB"))
        with Image.open(io.BytesIO(shots[-1].encoded_image_string)) as picture:
            drawn = np.asarray(picture.convert("RGB"))
        assert drawn.shape == expected.shape  # the image itself, with at most a few boxes drawn over it
        assert (drawn == expected).all(-1).mean() > 0.8


def test_patience_stops_with_model_final_and_the_best_weights_of_their_iteration(tmp_path, shapes_dir, monkeypatch,
                                                                                 caplog):
    """Scripted scores (AP 0.3, 0.2, 0.3): the best is the first; the second and third do not improve
    on it (equal is no improvement), so train.patience=2 stops the run at iteration 3."""
    scores = iter([0.3, 0.2, 0.3, 0.9])

    def scripted(model, cfg, dataset, device, show_progress=True, model_categories=None):
        return ModelEvaluation(stats={name: next(scores) if name == "AP" else 0.0 for name in STAT_NAMES})

    monkeypatch.setattr(trainer_module, "evaluate_model", scripted)
    out = tmp_path / "run"
    args = ["train", str(QUICKSTART), "--out", str(out), *shapes_overrides(shapes_dir), *SMALL_INPUT,
            "train.batch_size=1", "train.max_iter=20", "train.eval_every=1", "train.patience=2",
            "train.checkpoint_every=1", "train.keep_checkpoints=0", "train.log_every=20", "train.tensorboard=false"]
    with caplog.at_level(logging.INFO, logger="simpledet"):
        assert main(args) == 0
    assert "stopping early at iteration 3: AP has not improved for 2 evaluations (train.patience=2)" in caplog.text
    assert (out / "last_checkpoint").read_text().strip() == "model_final.safetensors"
    assert json.loads((out / "model_final.json").read_text())["iteration"] == 3
    best = json.loads((out / "model_best.json").read_text())
    assert (best["metric"], best["value"], best["iteration"]) == ("AP", 0.3, 1)
    kept, at_1 = load_file(out / "model_best.safetensors"), load_file(out / "model_0000001.safetensors")
    assert all(torch.equal(kept[k], at_1[k]) for k in at_1)
    assert not all(torch.equal(kept[k], v) for k, v in load_file(out / "model_0000002.safetensors").items())
    assert [r["eval"]["AP"] for r in _records(out) if "eval" in r] == [0.3, 0.2, 0.3]
    # resumed, the stopped run trains no further
    final = (out / "model_final.safetensors").read_bytes()
    assert main([*args, "--resume"]) == 0
    assert (out / "model_final.safetensors").read_bytes() == final
    assert len([r for r in _records(out) if "eval" in r]) == 3


@pytest.mark.parametrize("setting, message", [
    ("train.best_metric=mAP", "train.best_metric: unknown metric 'mAP'; choose one of AP, AP50, AP75, APs, APm, "
                              "APl, AR1, AR10, AR100, ARs, ARm, ARl"),
    ("train.patience=3", "train.patience=3 counts evaluations, but train.eval_every is 0"),
    ("train.accumulate=0", "train.accumulate must be 1 or more"),
    ("train.ema_decay=1.5", "train.ema_decay must be in [0, 1)"),
    ("train.cuda_graphs=sometimes", "train.cuda_graphs must be true, false or auto, got 'sometimes'"),
])
def test_bad_loop_settings_are_refused_before_anything_is_written(setting, message, tmp_path, shapes_dir, capsys):
    out = tmp_path / "run"
    assert main(["train", str(QUICKSTART), "--out", str(out), *shapes_overrides(shapes_dir), setting]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------ the moving average
def test_moving_average_matches_a_hand_computed_one():
    """decay 0.9 warmed up over 2 updates: d_t = 0.9 (1 - exp(-t / 2)). Trained parameters and
    trainable BN statistics are averaged, the batch counter copied; frozen BN and frozen
    parameters are never written."""
    model = nn.ModuleDict({"fc": nn.Linear(2, 2), "bn": nn.BatchNorm1d(2), "frozen_bn": FrozenBatchNorm2d(2),
                           "frozen": nn.Linear(2, 2)})
    model["frozen"].requires_grad_(False)
    with torch.no_grad():
        model["fc"].weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9, warmup_updates=2)
    frozen_versions = [t._version for t in (*ema.module["frozen_bn"].buffers(), *ema.module["frozen"].parameters())]
    expected_weight, expected_mean = 1.0, 0.0
    for t, value in enumerate([3.0, -2.0, 5.0], start=1):
        with torch.no_grad():
            model["fc"].weight.fill_(value)
            model["bn"].running_mean.fill_(10 * value)
            model["bn"].num_batches_tracked.fill_(t)
            model["frozen_bn"].running_mean.fill_(value)  # training never does this: shows it is not read
            model["frozen"].weight.fill_(value)
        ema.update(model)
        d = 0.9 * (1 - math.exp(-t / 2))
        expected_weight = d * expected_weight + (1 - d) * value
        expected_mean = d * expected_mean + (1 - d) * 10 * value
        averaged = ema.module
        assert averaged["fc"].weight.double() == pytest.approx(torch.full((2, 2), expected_weight).double(),
                                                               rel=1e-6)
        assert averaged["bn"].running_mean.double() == pytest.approx(torch.full((2,), expected_mean).double(),
                                                                     rel=1e-6)
        assert int(averaged["bn"].num_batches_tracked) == t
    assert ema.updates == 3
    assert torch.equal(ema.module["frozen_bn"].running_mean, torch.zeros(2))
    assert [t._version for t in (*ema.module["frozen_bn"].buffers(), *ema.module["frozen"].parameters())] == \
        frozen_versions
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert ema.module.state_dict().keys() == model.state_dict().keys()  # loads like the model's own files


# ------------------------------------------------------------------ gradient accumulation
class ToyDetector(nn.Module):
    """No BatchNorm and a loss that is a mean over images: two micro-batches of one image give the
    gradient of one batch of two."""

    trains_on_masks = False  # what the trainer asks of a detector: its targets are boxes and labels

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, 4)

    def forward(self, images, targets):
        box, size = [], []
        for image, target in zip(images, targets):
            prediction = self.fc(self.conv(image[None]).relu().mean((2, 3)))[0]
            goal = target["boxes"].mean(0) / 128
            box.append(F.smooth_l1_loss(prediction, goal))
            size.append((prediction.sum() - goal.sum()) ** 2)
        return {"loss_box": torch.stack(box).mean(), "loss_size": torch.stack(size).mean()}


def _toy_trainer(shapes_dir, folder, *settings):
    trainer = Trainer(small_config(shapes_dir, "train.tensorboard=false", "train.warmup_iters=4", *settings), folder)
    torch.manual_seed(0)
    toy = ToyDetector()
    trainer.model = trainer.ddp_model = toy
    trainer.optimizer = trainer_module.build_optimizer([toy], trainer.cfg.train, trainer.base_lr, trainer.device)
    return trainer


def test_accumulated_micro_batches_equal_one_batch_and_the_learning_rate_sees_it(tmp_path, shapes_dir):
    accumulated = _toy_trainer(shapes_dir, tmp_path / "a", "train.batch_size=1", "train.accumulate=2")
    whole = _toy_trainer(shapes_dir, tmp_path / "b", "train.batch_size=2")
    # quickstart: lr 0.04 for 8 images; 1 image x 1 process x 2 micro-batches is a batch of 2
    assert accumulated.total_batch == whole.total_batch == 2
    assert accumulated.base_lr == whole.base_lr == pytest.approx(0.04 * 2 / 8)
    (a, ta), (b, tb) = accumulated.dataset[0], accumulated.dataset[1]
    loss, parts = accumulated.step(1, [([a], [ta]), ([b], [tb])])
    expected_loss, expected_parts = whole.step(1, [([a, b], [ta, tb])])
    # iteration 1 of a 4-iteration warmup from the quickstart's factor 0.1: 0.01 x (0.1 x 3/4 + 1/4)
    assert accumulated.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"] == \
        pytest.approx(0.00325)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-7)
    assert parts.keys() == expected_parts.keys() == {"loss_box", "loss_size"}
    for name in parts:
        torch.testing.assert_close(parts[name], expected_parts[name], rtol=1e-6, atol=1e-7)
    for (name, p), q in zip(accumulated.model.named_parameters(), whole.model.parameters()):
        assert p.grad.norm() > 0
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)  # and so the update


def test_accumulation_through_cuda_graphs_gives_the_eager_gradients(tmp_path, shapes_dir, monkeypatch):
    """With the capture stood in (tests/graph_standin.py, whose replays hand back aliases of static
    gradient buffers as CUDA's do), two micro-batches through the graphed parts give the eager
    step's gradients bit for bit: the first one's gradients are not overwritten by the second replay."""
    FakeGraphs(monkeypatch)
    monkeypatch.setattr(trainer_module, "enable_cuda_graphs",
                        lambda model, n, device, **kw: enable_cuda_graphs(model, n, torch.device("cuda"), **kw))
    grads = {}
    for graphs in ("false", "true"):
        torch.manual_seed(0)
        # the backbone, neck and dense head graphed (the heads' graphs add captures, not another case)
        trainer = Trainer(small_config(shapes_dir, *SMALL_INPUT, "train.batch_size=1", "train.accumulate=2",
                                       "model.input.fixed_canvas=true", "train.tensorboard=false",
                                       "train.cuda_graph_heads=false", f"train.cuda_graphs={graphs}"),
                          tmp_path / graphs)
        assert trainer.graphed == (graphs == "true")
        trainer.model.train()
        micro_batches = [([trainer.dataset[i][0]], [trainer.dataset[i][1]]) for i in (0, 1)]
        torch.manual_seed(1)
        trainer.step(0, micro_batches)
        grads[graphs] = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert grads["true"].keys() == grads["false"].keys()
    different = [n for n in grads["false"] if not torch.equal(grads["true"][n], grads["false"][n])]
    assert not different, different[:3]


# ------------------------------------------------------------------ train.cuda_graphs=auto
def test_cuda_graphs_setting_reads_auto_true_and_false():
    assert TrainConfig().cuda_graphs == "auto"
    cfg = load_config(QUICKSTART)
    for raw, expected in (("auto", "auto"), ("true", True), ("False", False), ("AUTO", "auto")):
        apply_override(cfg, f"train.cuda_graphs={raw}")
        assert cuda_graphs_mode(cfg.train.cuda_graphs) == expected
        assert cuda_graphs_mode(from_dict(to_dict(cfg)).train.cuda_graphs) == expected  # saved configs
    assert cuda_graphs_mode(True) is True and cuda_graphs_mode("false") is False
    with pytest.raises(UserError, match="must be true, false or auto"):
        cuda_graphs_mode("maybe")


def test_cuda_graphs_auto_is_silently_off_on_the_cpu_and_on_for_cuda_training(tmp_path, shapes_dir, caplog):
    with caplog.at_level(logging.INFO):
        trainer = Trainer(small_config(shapes_dir, "train.tensorboard=false"), tmp_path / "cpu")
    assert trainer.graphed is False and "dense_step" not in vars(trainer.model)
    assert "cuda_graphs" not in caplog.text and "needs a GPU" not in caplog.text
    # the same decision on a CUDA device: graphed (nothing is captured until a CUDA step runs)
    trainer.device = torch.device("cuda")
    assert trainer._speed_up() is True and "dense_step" in vars(trainer.model)
    # ... except a model the capture refuses, which trains eagerly, saying why
    synced = Trainer(small_config(shapes_dir, "train.tensorboard=false", "model.backbone.norm=syncbn"),
                     tmp_path / "syncbn")
    synced.device = torch.device("cuda")
    with caplog.at_level(logging.INFO):
        assert synced._speed_up() is False
    assert "train.cuda_graphs=auto: eager, since" in caplog.text and "SyncBatchNorm2d" in caplog.text
    assert "dense_step" not in vars(synced.model)

