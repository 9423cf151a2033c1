"""An exponential moving average of a model's weights (train.ema_decay), as YOLOX keeps one.

After each optimizer step, every tensor that training changes moves towards the model's:
average = d * average + (1 - d) * current, with the decay warmed up over the first updates,
d = decay * (1 - exp(-updates / warmup_updates)) (YOLOX's and ultralytics' rule, 2000 updates),
so that the average does not cling to the random initial weights for the first thousands of steps.

What is averaged: the parameters that train, and the floating-point buffers that training updates
(trainable BatchNorm's running statistics, paired with the averaged weights as YOLOX, ultralytics,
timm and detectron2 do). Integer buffers (BatchNorm's batch counter) are copied. Frozen parts
(frozen BN's statistics, parameters of frozen stages) never change, so they are left alone: not
even rewritten, which would bump their version counters and drop frozen BN's cached folds.

A small explicit implementation rather than torch.optim.swa_utils.AveragedModel: that one copies
the weights at its first update instead of applying the warmed-up decay, rewrites every buffer,
frozen ones included, and wraps the model, which adds `module.` and `n_averaged` to its state_dict.
Here the average is a plain copy of the detector (`module`), whose state_dict is the model's, so
the weights files the trainer writes from it load like any other.
"""

import copy
import math

import torch
from torch import nn

from simpledet.modeling.norm import FrozenBatchNorm2d

WARMUP_UPDATES = 2000  # YOLOX's and ultralytics' time constant of the decay's warmup


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float, warmup_updates: float = WARMUP_UPDATES) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.warmup_updates = warmup_updates
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        frozen_buffers = {f"{name}.{b}" if name else b for name, m in model.named_modules()
                          if isinstance(m, FrozenBatchNorm2d) for b, _ in m.named_buffers(recurse=False)}
        self.averaged = [name for name, p in model.named_parameters() if p.requires_grad]
        self.averaged += [name for name, b in model.named_buffers()
                          if b.is_floating_point() and name not in frozen_buffers]
        self.copied = [name for name, b in model.named_buffers() if not b.is_floating_point()]

    def decay_at(self, updates: int) -> float:
        """The decay of the `updates`-th update (1-based)."""
        return self.decay * (1.0 - math.exp(-updates / self.warmup_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards `model`'s current weights."""
        self.updates += 1
        d = self.decay_at(self.updates)
        ours = self._tensors(self.module)
        theirs = self._tensors(model)
        # lerp: average + (1 - d) * (current - average); a tensor that did not change stays bit-exact
        torch._foreach_lerp_([ours[n] for n in self.averaged], [theirs[n] for n in self.averaged], 1.0 - d)
        for name in self.copied:
            ours[name].copy_(theirs[name])

    @staticmethod
    def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
        # looked up at each update, not kept: moving or reloading a model may replace its buffers
        return {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Restores an average: its weights (a state_dict) and how many updates made it."""
        self.module.load_state_dict(weights)
        self.updates = updates
