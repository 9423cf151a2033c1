"""The optimizer's parameter groups: the run's lr and weight decay, the norm layers' own decay
(train.norm_weight_decay), and a module's own settings for some of its parameters
(`optimizer_overrides`, SimpleDet's lr_mult / wd_mult), which win over both."""

import pytest
import torch
from torch import nn

from simpledet import load_config
from simpledet.config import TrainConfig
from simpledet.engine.optimizer import build_optimizer
from simpledet.errors import UserError

from .conftest import REPO


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Conv2d(4, 2, 1)
        self.head.optimizer_overrides = {"bias": {"lr_mult": 2.0, "weight_decay": 0.0}}
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def groups_by_name(model: nn.Module, **train) -> dict[tuple[float, float], list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optimizer([model], TrainConfig(**train), 0.1, torch.device("cpu"))
    return {(g["lr_mult"], g["weight_decay"]): sorted(names[id(p)] for p in g["params"])
            for g in optimizer.param_groups}


def test_norm_layers_take_their_own_decay_and_overrides_win() -> None:
    groups = groups_by_name(Toy(), weight_decay=1e-4, norm_weight_decay=0.0)
    assert list(groups) == [(1.0, 1e-4), (1.0, 0.0), (2.0, 0.0)]  # the default group first
    assert groups[1.0, 1e-4] == ["conv.bias", "conv.weight", "head.weight"]
    assert groups[1.0, 0.0] == ["bn.bias", "bn.weight", "gn.bias", "gn.weight"]
    assert groups[2.0, 0.0] == ["head.bias"]  # frozen parameters in no group
    # without norm_weight_decay the norms decay as everything else
    assert groups_by_name(Toy(), weight_decay=1e-4) == {
        (1.0, 1e-4): ["bn.bias", "bn.weight", "conv.bias", "conv.weight", "gn.bias", "gn.weight", "head.weight"],
        (2.0, 0.0): ["head.bias"]}
    with pytest.raises(UserError, match="train.norm_weight_decay must be >= 0 or None"):
        groups_by_name(Toy(), norm_weight_decay=-1.0)


def test_simpledet_configs_with_undecayed_norms() -> None:
    for name in ("retina_r50v1b_tdbu_640_3@384_25epoch.py", "retina_r50v1b_fpn_640_1@256_25epoch.py"):
        assert load_config(REPO / "configs/NASFPN" / name).train.norm_weight_decay == 0.0, name
    nasfpn = load_config(REPO / "configs/NASFPN/retina_r50v1b_nasfpn_640_7@256_25epoch.py")
    assert nasfpn.train.norm_weight_decay is None
