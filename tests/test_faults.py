"""Faults injected into training runs: a kill between any two writes of a checkpoint or at random
moments, a full disk, a run directory that already holds a run, a torchrun worker that dies, an
unreadable image met mid-run, fp16 gradients that overflow, and frozen BN with nothing
pretrained. Every interrupted run is resumed and must end with the weights of a run never
interrupted, bit for bit."""

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from itertools import islice

import pytest
import torch
from safetensors.torch import load_file

from simpledet.cli import main
from simpledet.data.coco import CocoDetection
from simpledet.data.sampler import GroupedBatchSampler
from simpledet.engine.trainer import Trainer
from simpledet.errors import UserError

from .conftest import REPO
from .helpers import QUICKSTART, shapes_overrides, small_config

ITERS = 4
RUN = ["train.max_iter=4", "train.batch_size=2", "train.checkpoint_every=1", "train.keep_checkpoints=1",
       "train.log_every=1", "train.warmup_iters=2", "train.steps=(3,)"]


def _train_args(out, data, *extra) -> list[str]:
    return ["train", str(QUICKSTART), "--out", str(out), *shapes_overrides(data), *RUN, *extra]


def _env() -> dict:
    # the threads of this process (tests/conftest.py), so that a subprocess computes what it computes
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))


def _assert_same_weights(path, reference) -> None:
    got = load_file(path)
    assert got.keys() == reference.keys()
    different = [k for k in reference if not torch.equal(got[k], reference[k])]
    assert not different, f"{len(different)} tensors differ, first {different[:3]}"


def _temp_files(out) -> list:
    return sorted(out.glob(".*.tmp"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shapes_dir):
    """A run never interrupted: its folder, and its final weights."""
    out = tmp_path_factory.mktemp("straight")
    assert main(_train_args(out, shapes_dir)) == 0
    return out, load_file(out / "model_final.safetensors")


# ------------------------------------------------------------------ kills
class Killed(BaseException):
    """The process dies here: nothing on the way catches it."""


# The file operations of the checkpoint of iteration 2, in order: four renames (weights, their
# JSON, the training state, last_checkpoint: the commit), then the pruning of checkpoint 1.
CHECKPOINT_2 = ["model_0000002.safetensors", "model_0000002.json", "model_0000002.state.pth", "last_checkpoint",
                "delete model_0000001.state.pth", "delete model_0000001.json", "delete model_0000001.safetensors"]


@pytest.mark.parametrize("done", range(len(CHECKPOINT_2)), ids=lambda k: f"after_{k}_of_{len(CHECKPOINT_2)}")
def test_a_kill_between_any_two_writes_of_a_checkpoint_resumes_exactly(done, tmp_path, shapes_dir, straight,
                                                                       monkeypatch):
    out = tmp_path / "run"
    performed = []
    real_replace, real_unlink, real_write = os.replace, os.unlink, Trainer._write_checkpoint

    def act(name):
        if len(performed) == done:
            raise Killed
        performed.append(name)

    def replace(src, dst):
        act(os.path.basename(dst))
        real_replace(src, dst)

    def unlink(path):
        act(f"delete {os.path.basename(path)}")
        real_unlink(path)

    with monkeypatch.context() as patch:
        def write_checkpoint(self, iteration, final, rngs):
            if iteration == 2:
                patch.setattr(os, "replace", replace)
                patch.setattr(os, "unlink", unlink)
            real_write(self, iteration, final, rngs)

        patch.setattr(Trainer, "_write_checkpoint", write_checkpoint)
        with pytest.raises(Killed):
            main(_train_args(out, shapes_dir))
    assert performed == CHECKPOINT_2[:done]
    committed = "model_0000002.safetensors" if done >= 4 else "model_0000001.safetensors"
    assert (out / "last_checkpoint").read_text().strip() == committed
    assert bool(_temp_files(out)) == (done < 4)  # a kill during a rename leaves its temporary file
    assert main(_train_args(out, shapes_dir, "--resume")) == 0
    _assert_same_weights(out / "model_final.safetensors", straight[1])
    assert _temp_files(out) == []
    iterations = [json.loads(line)["iteration"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(1, ITERS + 1))  # none twice


def _committed_iteration(out) -> int:
    last = out / "last_checkpoint"
    if not last.exists():
        return 0
    name = last.read_text().strip()
    return ITERS if name == "model_final.safetensors" else int(name.split("_")[1].split(".")[0])


def _has_logged_since(metrics, old_inode, iteration) -> bool:
    """Whether a new run has logged an iteration past `iteration`: a run rewrites metrics.jsonl
    (a new inode) when it starts, then appends a line at a time."""
    try:
        if metrics.stat().st_ino == old_inode:
            return False
        lines = metrics.read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(line.endswith("}") and json.loads(line)["iteration"] > iteration for line in lines)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, shapes_dir, straight):
    """SIGKILL at random instants of a run that writes a checkpoint every iteration, each followed
    by --resume: the instants fall in steps, in checkpoint writes and between them."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"
    kills = 0
    for attempt in range(3):
        start, inode = _committed_iteration(out), metrics.stat().st_ino if metrics.exists() else None
        command = [sys.executable, "-m", "simpledet", *_train_args(out, shapes_dir), *(["--resume"] if attempt else [])]
        proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and not _has_logged_since(metrics, inode, start):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))  # from this process's first step on
        proc.send_signal(signal.SIGKILL)
        kills += proc.wait() == -signal.SIGKILL
    assert kills >= 1, f"seed {seed}: every run finished before it could be killed"
    resumed = subprocess.run([sys.executable, "-m", "simpledet", *_train_args(out, shapes_dir), "--resume"],
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, f"seed {seed}: {resumed.stderr[-2000:]}"
    _assert_same_weights(out / "model_final.safetensors", straight[1])
    iterations = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert iterations == list(range(1, ITERS + 1)), f"seed {seed}"


# ------------------------------------------------------------------ full disks, occupied folders
def test_a_full_disk_during_a_checkpoint_stops_with_one_message_and_the_run_resumes(tmp_path, shapes_dir,
                                                                                    straight, monkeypatch, capsys):
    out = tmp_path / "run"
    real_save, saves = torch.save, []

    def save(obj, f):  # the second checkpoint's training state finds the disk full
        saves.append(f)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", save)
        assert main(_train_args(out, shapes_dir)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    assert f"{out / 'model_0000002.state.pth'}: cannot write (No space left on device)" in err
    assert f"the newest checkpoint is {out / 'model_0000001.safetensors'}" in err
    assert (out / "last_checkpoint").read_text().strip() == "model_0000001.safetensors"
    assert _temp_files(out) == []
    assert main(_train_args(out, shapes_dir, "--resume")) == 0
    _assert_same_weights(out / "model_final.safetensors", straight[1])


def test_outputs_that_cannot_be_written_name_the_file_and_the_reason(tmp_path, shapes_dir, monkeypatch, capsys):
    # a results file on a full disk: nothing half-written is left
    gt = shapes_dir / "annotations" / "val.json"
    records = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in json.loads(gt.read_text())["annotations"]]
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps(records))
    stats = tmp_path / "out" / "stats.json"
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
        assert main(["score", str(gt), str(detections), "--out", str(stats)]) == 2
    err = capsys.readouterr().err
    assert f"{stats}: cannot write (No space left on device)" in err and "Traceback" not in err
    assert list(stats.parent.iterdir()) == []

    # an --out below a file
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(_train_args(blocker / "run", shapes_dir)) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'run'}: cannot write (Not a directory)" in err and "Traceback" not in err


def test_training_into_a_folder_with_checkpoints_needs_resume_or_a_new_out(straight, shapes_dir, capsys):
    out, _ = straight
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(_train_args(out, shapes_dir)) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--resume" in err and "new --out" in err and "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched


# ------------------------------------------------------------------ torchrun restarts
RESTART_WRAPPER = """
import os, signal, sys
from simpledet.cli import main
from simpledet.engine.trainer import Trainer

save_checkpoint = Trainer.save_checkpoint

def save_then_die(self, iteration, final=False):
    save_checkpoint(self, iteration, final)
    if self.rank == 1 and os.environ["TORCHELASTIC_RESTART_COUNT"] == "0":
        os.kill(os.getpid(), signal.SIGKILL)

Trainer.save_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_restarts_a_killed_group_which_resumes_exactly(tmp_path, shapes_dir):
    """2 CPU processes; rank 1 SIGKILLs itself after the first checkpoint. torchrun starts the
    group again with the same command line, which resumes from that checkpoint without --resume
    and ends with the weights of a group never killed."""
    wrapper = tmp_path / "die_after_first_checkpoint.py"
    wrapper.write_text(RESTART_WRAPPER)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    def torchrun(out, *program):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "1",
                   "--monitor-interval", "0.1", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                   *program, "train", str(QUICKSTART), "--out", str(out), *shapes_overrides(shapes_dir),
                   "train.device=cpu", "train.max_iter=4", "train.batch_size=1", "train.checkpoint_every=2",
                   "train.warmup_iters=2"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return run

    torchrun(tmp_path / "straight", "-m", "simpledet")
    restarted = torchrun(tmp_path / "restarted", str(wrapper))
    assert "torchrun restart 1" in restarted.stderr
    assert f"resuming from {tmp_path / 'restarted' / 'model_0000002.safetensors'}" in restarted.stderr
    _assert_same_weights(tmp_path / "restarted" / "model_final.safetensors",
                         load_file(tmp_path / "straight" / "model_final.safetensors"))


# ------------------------------------------------------------------ bad images
def test_an_unreadable_image_mid_run_stops_with_one_message_and_the_run_resumes(tmp_path, shapes_dir, straight,
                                                                                capfd):
    """A DataLoader worker meets a broken image at iteration 3: one message naming the image and
    its annotation file, exit code 2, no worker traceback; with the image repaired, --resume ends
    as a run never stopped."""
    ann_file = shapes_dir / "annotations" / "train.json"
    dataset = CocoDetection(ann_file, shapes_dir / "train", train=True, flip_copies=True)
    files = [dataset.image_info(i)["file_name"] for i in range(len(dataset))]
    batches = list(islice(GroupedBatchSampler(dataset.aspect_ratios, 2, seed=0), 3))
    seen_before = {files[i] for batch in batches[:2] for i in batch}
    victim = next(files[i] for i in batches[2] if files[i] not in seen_before)
    data = tmp_path / "shapes"
    (data / "train").mkdir(parents=True)
    for name in set(files):
        (data / "train" / name).symlink_to(shapes_dir / "train" / name)
    (data / "annotations").symlink_to(shapes_dir / "annotations")
    (data / "val").symlink_to(shapes_dir / "val")
    (data / "train" / victim).unlink()
    (data / "train" / victim).write_bytes((shapes_dir / "train" / victim).read_bytes()[:200])  # truncated

    out = tmp_path / "run"
    assert main(_train_args(out, data, "data.num_workers=1")) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    (message,) = [line for line in err.splitlines() if "error:" in line]
    assert str(data / "train" / victim) in message and str(data / "annotations" / "train.json") in message
    assert "iteration 3" in message and str(out / "model_0000002.safetensors") in message
    (data / "train" / victim).unlink()
    (data / "train" / victim).symlink_to(shapes_dir / "train" / victim)
    assert main(_train_args(out, data, "data.num_workers=1", "--resume")) == 0
    _assert_same_weights(out / "model_final.safetensors", straight[1])


# ------------------------------------------------------------------ divergence
def test_fp16_loss_scale_and_skipped_steps_are_logged_and_a_collapse_stops(tmp_path, shapes_dir, monkeypatch):
    """fp16 needs a GPU: the CPU run gets an enabled GradScaler (torch's arithmetic) and gradients
    made infinite at chosen iterations, which the scaler skips and halves its scale for."""
    real_scaler = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler",
                        lambda device, enabled=True: real_scaler(device, init_scale=4.0, growth_interval=1000))
    trainer = Trainer(small_config(shapes_dir, "train.max_iter=6", "train.batch_size=1", "train.log_every=2",
                                   "train.checkpoint_every=100"), tmp_path / "run")
    overflow, now = {1, 3, 4, 5}, {}
    weight = next(p for p in trainer.model.parameters() if p.requires_grad)
    weight.register_hook(lambda grad: grad * float("inf") if now["iteration"] in overflow else grad)
    step = trainer.step

    def step_telling_the_hook(iteration, *batch):
        now["iteration"] = iteration
        return step(iteration, *batch)

    monkeypatch.setattr(trainer, "step", step_telling_the_hook)
    with pytest.raises(UserError) as stop:
        trainer.train()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["loss_scale"], r["skipped_steps"]) for r in records] == [(2, 2.0, 1), (4, 1.0, 1)]
    message = str(stop.value)
    assert "loss scale fell to 0.25 by iteration 6" in message and "train.amp_dtype=bfloat16" in message
    assert "no checkpoint has been written yet (train.checkpoint_every=100" in message


def test_frozen_bn_with_nothing_pretrained_stops_before_training(tmp_path, shapes_dir, capsys):
    out = tmp_path / "run"
    assert main(_train_args(out, shapes_dir, "model.backbone.norm=frozen_bn")) == 2
    err = capsys.readouterr().err
    assert "model.backbone.norm" in err and "model.backbone.pretrained" in err and "freeze_at=0" in err
    assert not (out / "config.json").exists() and not (out / "metrics.jsonl").exists()
