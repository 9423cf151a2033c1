"""FitNet distillation: zero loss when the student already has the teacher's features; training
with a teacher from a checkpoint leaves the teacher untouched and the student checkpoint plain."""

import json

import torch
from safetensors.torch import load_file

from simpledet import build_model
from simpledet.cli import main
from simpledet.engine.checkpoint import save_weights
from simpledet.engine.distill import FitNetDistiller

from .conftest import REPO
from .helpers import QUICKSTART, shapes_overrides, small_config

TARGETS = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1])}]


def test_loss_is_zero_when_features_are_equal(shapes_dir):
    torch.manual_seed(0)
    student = build_model(small_config(shapes_dir))
    teacher = build_model(small_config(shapes_dir))
    teacher.load_state_dict(student.state_dict())
    student.eval()  # same BN statistics in both; the hooks still capture
    distiller = FitNetDistiller(student, teacher, ("c4", "c5"), weight=5.0)
    distiller.train()
    for conv in distiller.adapters.values():  # identity hint conv
        channels = conv.weight.shape[0]
        conv.weight.data = torch.eye(channels)[:, :, None, None]
        conv.bias.data.zero_()
    with torch.no_grad():
        student([torch.rand(3, 128, 128)])
    assert float(distiller.loss()) == 0.0  # ResNet stage outputs are post-ReLU: relu(x) == x

    # the loss is positive once the student differs, and scales with the weight
    with torch.no_grad():
        student.backbone.layer4[0].conv1.weight.mul_(1.5)
        student([torch.rand(3, 128, 128)])
    assert float(distiller.loss()) > 0.0


def test_training_with_a_teacher(tmp_path, shapes_dir):
    torch.manual_seed(1)
    teacher_weights = tmp_path / "teacher.safetensors"
    save_weights(build_model(small_config(shapes_dir)), teacher_weights)
    before = load_file(teacher_weights)
    kd_config = tmp_path / "kd.py"
    kd_config.write_text(
        "from simpledet.config import load_config\n"
        "from simpledet.engine.distill import DistillConfig\n"
        f"config = load_config({str(QUICKSTART)!r})\n"
        f"config.distill = DistillConfig(teacher_config={str(QUICKSTART)!r}, teacher_weights={str(teacher_weights)!r},"
        " features=('c5',), weight=10.0)\n")
    out = tmp_path / "run"
    assert main(["train", str(kd_config), "--out", str(out), *shapes_overrides(shapes_dir),
                 "train.max_iter=10", "train.batch_size=2", "train.checkpoint_every=5", "train.log_every=5"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_distill" in r and r["loss_distill"] > 0 for r in records)
    student = load_file(out / "model_final.safetensors")
    assert not any("adapters" in k or "teacher" in k for k in student)  # a plain detector
    after = load_file(teacher_weights)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # resume restores the hint convs as well
    assert main(["train", str(kd_config), "--out", str(out), "--resume", *shapes_overrides(shapes_dir),
                 "train.max_iter=12", "train.batch_size=2", "train.checkpoint_every=5", "train.log_every=5"]) == 0


def test_kd_configs_name_simpledet_settings():
    from simpledet import load_config

    cfg = load_config(REPO / "configs/kd/faster_r50v1b_fpn_1x_fitnet_g5.py")
    assert cfg.distill.weight == 5.0 and cfg.distill.features == ("c5",)
    assert cfg.distill.teacher_config.endswith("faster_r152v1b_fpn_2x.py")
