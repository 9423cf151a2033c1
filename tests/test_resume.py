"""A non-finite loss stops training with the iteration named and the newest checkpoint kept and
named; a run with evaluation, the moving average and accumulation on resumes exactly. (Kills, full
disks and the other faults a run survives: tests/test_faults.py.)"""

import json

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from simpledet.cli import main
from simpledet.engine.trainer import Trainer

from .helpers import QUICKSTART, shapes_overrides, small_val_overrides


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, shapes_dir, capsys):
    out = tmp_path / "run"
    base = shapes_overrides(shapes_dir) + ["train.batch_size=2", "train.checkpoint_every=2", "train.log_every=100"]
    assert main(["train", str(QUICKSTART), "--out", str(out), *base, "train.max_iter=2"]) == 0
    good = (out / "last_checkpoint").read_text().strip()
    # a zero std makes the normalised input infinite from iteration 3 on
    code = main(["train", str(QUICKSTART), "--out", str(out), "--resume", *base, "train.max_iter=6",
                 "model.input.std=(0.0, 0.0, 0.0)"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not finite at iteration 3" in err and "Traceback" not in err
    assert f"the newest checkpoint is {out / good}" in err
    assert (out / "last_checkpoint").read_text().strip() == good
    assert load_file(out / good)  # still loadable


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path, shapes_dir, capsys):
    code = main(["train", str(QUICKSTART), "--out", str(tmp_path / "run"), *shapes_overrides(shapes_dir),
                 "train.batch_size=1", "train.max_iter=2", "train.log_every=1", "train.checkpoint_every=100",
                 "model.input.std=(0.0, 0.0, 0.0)"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not finite at iteration 1" in err
    assert "no checkpoint has been written yet (train.checkpoint_every=100 sets how often one is)" in err


class Killed(BaseException):
    """The process dies here: nothing on the way catches it."""


def test_a_run_with_evaluation_averaging_and_accumulation_resumes_exactly(tmp_path, shapes_dir, monkeypatch):
    """train.eval_every, train.ema_decay, train.accumulate and TensorBoard on, killed after the last
    evaluation (iteration 2) and before the final checkpoint: the resumed run trains and evaluates
    iteration 2 again from the checkpoint of iteration 1 (whose evaluation it keeps). It ends with the
    weights, the best weights and the metrics.jsonl of a run never killed, and TensorBoard shows
    each iteration once."""
    overrides = [*shapes_overrides(shapes_dir), *small_val_overrides(shapes_dir, tmp_path), "train.batch_size=1",
                 "model.input.min_size=(64,)", "model.input.max_size=96",  # the loop is tested, not the model
                 "train.accumulate=2", "train.ema_decay=0.9", "train.eval_every=1", "train.best_metric=AR100",
                 "train.max_iter=2", "train.checkpoint_every=1", "train.log_every=1", "train.warmup_iters=2"]

    def train(out, *extra) -> int:
        return main(["train", str(QUICKSTART), "--out", str(out), *overrides, *extra])

    straight, out = tmp_path / "straight", tmp_path / "killed"
    assert train(straight) == 0
    save_checkpoint = Trainer.save_checkpoint

    def save_or_die(self, iteration, final=False):
        if iteration == 2:
            raise Killed
        save_checkpoint(self, iteration, final)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", save_or_die)
        with pytest.raises(Killed):
            train(out)
    assert (out / "last_checkpoint").read_text().strip() == "model_0000001.safetensors"
    assert train(out, "--resume") == 0

    for name in ("model_final.safetensors", "model_best.safetensors"):
        expected, got = load_file(straight / name), load_file(out / name)
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected), name
    assert json.loads((out / "model_best.json").read_text()) == json.loads((straight / "model_best.json").read_text())

    def lines(run):  # images per second is a measurement, not a result
        return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert lines(out) == lines(straight)
    assert [(r["iteration"], "eval" in r) for r in lines(out)] == [(1, False), (1, True), (2, False), (2, True)]

    def scalars(run, tag):
        events = EventAccumulator(str(run / "tensorboard"), size_guidance={SCALARS: 0})
        events.Reload()
        return [(s.step, s.value) for s in events.Scalars(tag)]

    assert [step for step, _ in scalars(out, "train/loss")] == [1, 2]
    assert [step for step, _ in scalars(out, "eval/AP")] == [1, 2]
    for tag in ("train/loss", "train/lr", "eval/AR100", "eval/AP"):
        assert scalars(out, tag) == scalars(straight, tag), tag

    # the weights files hold the average; the trained weights are in the training state
    state = torch.load(out / "model_final.state.pth", weights_only=True)
    final = load_file(out / "model_final.safetensors")
    assert state["ema_updates"] == 2 and state["batches"] == 4
    trained = state["trained_weights"]
    assert not torch.equal(final["roi_heads.box_predictor.cls_score.weight"],
                           trained["roi_heads.box_predictor.cls_score.weight"])
