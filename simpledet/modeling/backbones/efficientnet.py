"""EfficientNet as SimpleDet builds it for detection (models/efficientnet/builder.py), trained from
scratch with BatchNorm everywhere.

Nine stages, each `repeats[i]` units; the first unit of a stage has the stage's stride and no
residual connection, the others keep the shape and add their input. Stages 1 and 9 are a plain
conv + BN + ReLU6; the others are MBConv units: a 1x1 expansion to `expansion` x the input channels
(absent when the expansion is 1), a depthwise k x k conv, squeeze-and-excitation, a 1x1 projection.

SimpleDet's version differs from the paper's (and from torchvision's efficientnet_b5): ReLU6
instead of swish, also inside squeeze-and-excitation, whose 1x1 convs have no bias; every other
conv has a bias before its BN; no drop-connect and no dropout; stage 6 has 172 channels
(torchvision: 176). The depths, kernels, strides, expansions and the squeeze width (a quarter of
the unit's input channels) are the paper's. Outputs c2..c5 are stages 3, 4, 6 and 9 (strides 4,
8, 16, 32).

Stage N is the module `layerN` (as ResNet's stages), so SimpleDet's `stage3_unit1_conv1` is our
`layer3.0.conv1` by the ResNet renaming rules (weights/mxnet_names.py) and only the SE layers
(`stage3_unit1_se2_fc1` -> `layer3.0.se.fc1`) need a rule of their own
(simpledet/weights/simpledet_families/efficientnet.py).
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.norm import make_norm

OUTPUT_NAMES = ("c2", "c3", "c4", "c5")
NORMS = ("bn", "syncbn", "gn", "frozen_bn")


class SqueezeExcite(nn.Module):
    """Channel attention: global mean, 1x1 conv down, ReLU6, 1x1 conv up, sigmoid, scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1, bias=False)
        self.fc2 = nn.Conv2d(squeeze, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        attention = x.mean(dim=(2, 3), keepdim=True)
        attention = self.fc2(F.relu6(self.fc1(attention)))
        return x * attention.sigmoid()


class ConvNormReLU6(nn.Module):
    """SimpleDet's `convnormrelu`: the stem (3x3, stride 2) and the last stage (1x1)."""

    def __init__(self, *, in_ch: int, out_ch: int, kernel: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2)
        self.bn1 = make_norm(norm, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(self.bn1(self.conv1(x)))


class MBConv(nn.Module):
    """SimpleDet's `mbconv`: [1x1 expand + BN + ReLU6] -> depthwise + BN + ReLU6 -> SE -> 1x1 + BN,
    plus the input when `residual`."""

    def __init__(self, *, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int, residual: bool,
                 norm: str) -> None:
        super().__init__()
        inner = in_ch * expansion
        if expansion != 1:
            self.conv1 = nn.Conv2d(in_ch, inner, 1)
            self.bn1 = make_norm(norm, inner)
        else:  # SimpleDet's mbc1: the depthwise conv reads the input directly
            self.conv1 = self.bn1 = None
        self.conv2 = nn.Conv2d(inner, inner, kernel, stride, kernel // 2, groups=inner)
        self.bn2 = make_norm(norm, inner)
        self.se = SqueezeExcite(inner, in_ch // 4)
        self.conv3 = nn.Conv2d(inner, out_ch, 1)
        self.bn3 = make_norm(norm, out_ch)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = x if self.conv1 is None else F.relu6(self.bn1(self.conv1(x)))
        out = self.se(F.relu6(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return out + x if self.residual else out


class EfficientNet(nn.Module):
    """Stages `layer1`..`layerN` (nn.Sequential of units); forward returns c2..c5, the outputs of
    the stages `out_stages` names (1-based)."""

    def __init__(self, *, repeats: tuple[int, ...], channels: tuple[int, ...], strides: tuple[int, ...],
                 kernels: tuple[int, ...], expansions: tuple[int, ...], out_stages: tuple[int, ...],
                 norm: str) -> None:
        super().__init__()
        self.out_stages = tuple(out_stages)
        self.num_stages = max(self.out_stages)  # stages past the last output are not built
        in_ch = 3
        for index, (units, out_ch, stride, kernel, expansion) in enumerate(
                zip(repeats, channels, strides, kernels, expansions), start=1):
            if index > self.num_stages:
                break
            blocks = []
            for unit in range(units):
                first = unit == 0
                common = dict(out_ch=out_ch, kernel=kernel, stride=stride if first else 1, norm=norm)
                if expansion == 0:
                    blocks.append(ConvNormReLU6(in_ch=in_ch, **common))
                else:
                    blocks.append(MBConv(in_ch=in_ch, expansion=expansion, residual=not first, **common))
                in_ch = out_ch
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self._channels = {name: channels[s - 1] for name, s in zip(OUTPUT_NAMES, self.out_stages)}
        init_weights(self)

    def output_shape(self) -> dict[str, int]:
        return dict(self._channels)

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        out: OrderedDict[str, Tensor] = OrderedDict()
        for index in range(1, self.num_stages + 1):
            x = self.get_submodule(f"layer{index}")(x)
            if index in self.out_stages:
                out[OUTPUT_NAMES[self.out_stages.index(index)]] = x
        return out


def init_weights(module: nn.Module) -> None:
    """SimpleDet's initialisation for training from scratch (detection_train.py: Xavier, gaussian,
    fan-in, magnitude 2, i.e. He-normal over the fan-in; the depthwise convs' fan-in is k x k), zero
    biases, unit BN."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass
class EfficientNetConfig:
    """EfficientNet-B5 of SimpleDet's models/efficientnet/builder.py (`efficientnet_b5`); one value
    per stage in every tuple. `expansions`: 0 makes the stage a plain conv + BN + ReLU6 (the stem
    and the last stage), 1 or 6 an MBConv stage with that expansion. `out_stages`: the stages (1-based)
    whose outputs are c2..c5. `norm`: "bn" (SimpleDet trains these from scratch with per-GPU BN),
    "syncbn", "gn" or "frozen_bn". `pretrained`: a local PyTorch weights file with our names, or None."""

    repeats: tuple[int, ...] = (1, 3, 5, 5, 7, 7, 9, 3, 1)
    channels: tuple[int, ...] = (48, 24, 40, 64, 128, 172, 304, 512, 2048)
    strides: tuple[int, ...] = (2, 1, 2, 2, 2, 1, 2, 1, 1)
    kernels: tuple[int, ...] = (3, 3, 3, 5, 3, 5, 5, 3, 1)
    expansions: tuple[int, ...] = (0, 1, 6, 6, 6, 6, 6, 6, 0)
    out_stages: tuple[int, ...] = (3, 4, 6, 9)
    norm: str = "bn"
    pretrained: str | None = None

    def check(self) -> None:
        """Values outside their range fail here, when the model is built, naming the field."""
        stages = len(self.repeats)
        for name in ("channels", "strides", "kernels", "expansions"):
            if len(getattr(self, name)) != stages:
                raise UserError(f"model.backbone.{name} needs one value per stage ({stages}, as "
                                f"model.backbone.repeats), got {getattr(self, name)}")
        if any(r < 1 for r in self.repeats):
            raise UserError(f"model.backbone.repeats must be >= 1 per stage, got {self.repeats}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise UserError(f"model.backbone.kernels must be odd, got {self.kernels}")
        if any(s < 1 for s in self.strides):
            raise UserError(f"model.backbone.strides must be >= 1, got {self.strides}")
        if any(e < 0 for e in self.expansions):
            raise UserError(f"model.backbone.expansions must be 0 (a conv stage) or >= 1 (MBConv), "
                            f"got {self.expansions}")
        if any(self.expansions) and min(self.channels) < 4:
            # an MBConv unit's SE squeezes to a quarter of its input channels
            raise UserError(f"model.backbone.channels must be >= 4 (SE squeezes to a quarter), got {self.channels}")
        if len(self.out_stages) != 4 or list(self.out_stages) != sorted(set(self.out_stages)) or \
                not 1 <= self.out_stages[0] <= self.out_stages[-1] <= stages:
            raise UserError(f"model.backbone.out_stages must be 4 increasing stages in 1..{stages} (c2..c5), "
                            f"got {self.out_stages}")
        if self.norm not in NORMS:
            raise UserError(f"model.backbone.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")

    def build(self) -> EfficientNet:
        self.check()
        return EfficientNet(repeats=self.repeats, channels=self.channels, strides=self.strides,
                            kernels=self.kernels, expansions=self.expansions, out_stages=self.out_stages,
                            norm=self.norm)
