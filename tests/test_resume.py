"""A non-finite loss stops training with the iteration named and the newest checkpoint kept and
named. (Kills, full disks and the other faults a run survives: tests/test_faults.py.)"""

from safetensors.torch import load_file

from simpledet.cli import main

from .helpers import QUICKSTART, shapes_overrides


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
