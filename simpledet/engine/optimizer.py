"""The optimizer a config asks for (train.optimizer): SGD with momentum, as SimpleDet trains every
zoo model, or AdamW, for backbones trained that way."""

import torch
from torch import nn

from simpledet.config import TrainConfig
from simpledet.errors import UserError

OPTIMIZERS = ("sgd", "adamw")
OPTIMIZER_IMPLS = ("fused", "foreach", "for-loop")
# layers whose scale and shift train.norm_weight_decay covers (BatchNorm and SyncBatchNorm are _NormBase)
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def build_optimizer(modules: list[nn.Module], train: TrainConfig, lr: float,
                    device: torch.device) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters of `modules`. train.optimizer_impl picks the
    kernels; the update is the same (fused and foreach batch the per-parameter loop)."""
    if train.optimizer not in OPTIMIZERS:
        raise UserError(f"train.optimizer: {train.optimizer!r} is not one of {list(OPTIMIZERS)}")
    if train.optimizer_impl not in OPTIMIZER_IMPLS:
        raise UserError(f"train.optimizer_impl: {train.optimizer_impl!r} is not one of {list(OPTIMIZER_IMPLS)}")
    if train.norm_weight_decay is not None and train.norm_weight_decay < 0:
        raise UserError(f"train.norm_weight_decay must be >= 0 or None (as train.weight_decay), "
                        f"got {train.norm_weight_decay}")
    params = parameter_groups(modules, train.weight_decay, train.norm_weight_decay)
    kernels = {"fused": {"fused": True}, "foreach": {"foreach": True},
               "for-loop": {"foreach": False}}[train.optimizer_impl]
    if train.optimizer_impl == "fused" and device.type not in ("cuda", "cpu"):  # torch's fused kernels
        kernels = {"foreach": True}
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(train.betas), weight_decay=train.weight_decay, **kernels)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay, **kernels)
    if kernels.get("fused") and train.momentum:
        # torch's fused SGD (2.11 to 2.14 at least) makes its momentum buffers with empty_like on
        # its first step and leaves them uninitialised when the fp16 loss scaler skips that step
        # (dynamic scaling's first steps nearly always overflow): the next step would add garbage.
        # Zero buffers from the start give the first step's update exactly (0.9 * 0 + g = g).
        for p in (p for group in params for p in group["params"]):
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return optimizer


def parameter_groups(modules: list[nn.Module], weight_decay: float, norm_weight_decay: float | None = None
                     ) -> list[dict]:
    """The trainable parameters of `modules` in groups by their lr multiplier and weight decay:
    x1 and `weight_decay`, or `norm_weight_decay` for the norm layers' scale and shift where it is
    set, unless a module asks otherwise for some of its own parameters in an `optimizer_overrides`
    dict, {parameter name within it: {"lr_mult": m, "weight_decay": d}} (SimpleDet's lr_mult /
    wd_mult; its FCOS head's biases train at twice the lr without decay). The default group comes
    first; the trainer sets each group's lr to the schedule's x lr_mult."""
    overrides: dict[nn.Parameter, dict[str, float]] = {}
    for module in modules:
        for sub in module.modules():
            if norm_weight_decay is not None and isinstance(sub, NORM_LAYERS):
                overrides.update({p: {"weight_decay": norm_weight_decay} for p in sub.parameters(recurse=False)})
            for name, setting in getattr(sub, "optimizer_overrides", {}).items():
                overrides[sub.get_parameter(name)] = setting
    groups: dict[tuple[float, float], list[nn.Parameter]] = {(1.0, weight_decay): []}
    for p in (p for m in modules for p in m.parameters() if p.requires_grad):
        setting = overrides.get(p, {})
        groups.setdefault((setting.get("lr_mult", 1.0), setting.get("weight_decay", weight_decay)), []).append(p)
    return [{"params": params, "lr_mult": lr_mult, "weight_decay": decay}
            for (lr_mult, decay), params in groups.items() if params]
