"""FitNet knowledge distillation (Romero et al. 2015), as SimpleDet's kd configs do it: the student
imitates a frozen teacher's feature maps through a 1x1 "hint" convolution + ReLU, with the mean
squared error scaled by a weight (SimpleDet: C5 features, 5 for Faster R-CNN, 10 for RetinaNet).

The distiller sits beside the student, not inside it: it reads the student's features with
forward hooks, so the student's checkpoint stays a plain detector that evaluates and predicts
without the teacher.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError


@dataclass
class DistillConfig:
    """teacher_config: the teacher's config file; teacher_weights: its checkpoint (SimpleDet used its
    R152v1b-FPN 2x model); features: names in the backbone's (c2..c5) or the neck's (p2..p6)
    output; weight: the loss scale (SimpleDet's grad_scale)."""

    teacher_config: str = ""
    teacher_weights: str = ""
    features: tuple[str, ...] = ("c5",)
    weight: float = 5.0


class FitNetDistiller(nn.Module):
    def __init__(self, student: nn.Module, teacher: nn.Module, features: tuple[str, ...], weight: float) -> None:
        super().__init__()
        self.features = tuple(features)
        self.weight = weight
        self.teacher = [teacher]  # a list: not a submodule, so neither saved nor trained with the adapters
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        student_channels = _channels(student, self.features)
        teacher_channels = _channels(teacher, self.features)
        self.adapters = nn.ModuleDict({
            name: nn.Conv2d(student_channels[name], teacher_channels[name], 1) for name in self.features})
        for conv in self.adapters.values():
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        self._captured: dict[str, Tensor] = {}
        student.backbone.register_forward_hook(self._capture_backbone)
        if student.neck is not None:
            student.neck.register_forward_hook(self._capture_neck)

    def _capture_backbone(self, module, inputs, outputs) -> None:
        if self.training:
            self._captured = {"_input": inputs[0], **outputs}

    def _capture_neck(self, module, inputs, outputs) -> None:
        if self.training:
            self._captured.update(outputs)

    def loss(self) -> Tensor:
        """The imitation loss for the student's last forward pass."""
        batch = self._captured["_input"]
        teacher = self.teacher[0]
        with torch.no_grad():
            target = teacher.backbone(batch)
            if teacher.neck is not None and any(f.startswith("p") for f in self.features):
                target = {**target, **teacher.neck(target)}
        total = batch.new_zeros(())
        for name in self.features:
            hint = F.relu(self.adapters[name](self._captured[name]))
            total = total + F.mse_loss(hint.float(), target[name].float())
        self._captured = {}
        return total * self.weight

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher[0].eval()  # the teacher stays in eval mode
        return self


def _channels(model: nn.Module, features: tuple[str, ...]) -> dict[str, int]:
    channels = model.backbone.output_shape()
    if model.neck is not None:
        channels.update(model.neck.output_shape())
    missing = [f for f in features if f not in channels]
    if missing:
        raise UserError(f"distill.features: {missing[0]!r} is not a feature of the model (has {sorted(channels)})")
    return channels


def build_distiller(cfg, student: nn.Module, device: torch.device, config_dir: Path | None = None) -> FitNetDistiller:
    from simpledet.api import build_model
    from simpledet.config import load_config
    from simpledet.engine.checkpoint import load_weights

    d = cfg.distill
    if not d.teacher_config or not d.teacher_weights:
        raise UserError("distillation needs distill.teacher_config and distill.teacher_weights")
    teacher_cfg_path = Path(d.teacher_config)
    if not teacher_cfg_path.is_file() and config_dir is not None and (config_dir / d.teacher_config).is_file():
        teacher_cfg_path = config_dir / d.teacher_config
    teacher = build_model(load_config(teacher_cfg_path), load_pretrained=False)
    load_weights(teacher, d.teacher_weights)
    teacher.to(device)
    if cfg.train.channels_last:  # in the student's memory format, as the trainer runs the student
        teacher.to(memory_format=torch.channels_last)
    return FitNetDistiller(student, teacher, d.features, d.weight).to(device)
