"""A run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run;
a non-finite loss stops training with the iteration named and the last good checkpoint kept."""

import os
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from simpledet.cli import main

from .helpers import QUICKSTART, shapes_overrides

ITERS = 30


def _train_cmd(out, data, *extra):
    overrides = shapes_overrides(data) + [f"train.max_iter={ITERS}", "train.batch_size=2",
                                          "train.checkpoint_every=3", "train.warmup_iters=5", "train.steps=(20,)"]
    return [sys.executable, "-m", "simpledet", "train", str(QUICKSTART), "--out", str(out), *overrides, *extra]


def _run(cmd):
    env = dict(os.environ, PYTHONPATH=str(QUICKSTART.parents[2]))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_then_resume_is_bit_identical(tmp_path, shapes_dir):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run(_train_cmd(straight, shapes_dir)).returncode == 0

    env = dict(os.environ, PYTHONPATH=str(QUICKSTART.parents[2]))
    proc = subprocess.Popen(_train_cmd(killed, shapes_dir), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = killed / "last_checkpoint"
    deadline = time.time() + 240
    while time.time() < deadline and not (marker.exists() and "0000006" <= marker.read_text().strip()[6:13]):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model_final.safetensors").exists()

    resumed = _run(_train_cmd(killed, shapes_dir, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(straight / "model_final.safetensors")
    b = load_file(killed / "model_final.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, f"{len(different)} tensors differ, first {different[:3]}"


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
    assert (out / "last_checkpoint").read_text().strip() == good
    assert load_file(out / good)  # still loadable
