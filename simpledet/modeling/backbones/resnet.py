"""ResNet backbones: v1 (MSRA, stride in the first 1x1 conv) and v1b (GluonCV / torchvision,
stride in the 3x3 conv), depths 18 to 152.

Parameter names follow torchvision's ResNet (conv1, bn1, layer1..layer4, downsample.0/1) so that
classification checkpoints load without renaming. The forward pass returns the stage outputs named
c2..c5 (strides 4..32), the names the necks and heads use.
"""

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from simpledet.modeling.norm import conv_norm, make_norm

# blocks per stage and block type, by depth
_ARCH = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1
    fuse_frozen_bn = False  # set by ResNet

    def __init__(self, in_ch: int, width: int, stride: int, norm: str, stride_in_1x1: bool = False) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        fuse = self.fuse_frozen_bn
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x, fuse)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, fuse))
        out = conv_norm(self.conv2, self.bn2, out, fuse)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4
    fuse_frozen_bn = False  # set by ResNet

    def __init__(self, in_ch: int, width: int, stride: int, norm: str, stride_in_1x1: bool = False) -> None:
        super().__init__()
        out_ch = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, width, 1, stride_1x1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride_3x3, 1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        fuse = self.fuse_frozen_bn
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x, fuse)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, fuse))
        out = self.relu(conv_norm(self.conv2, self.bn2, out, fuse))
        out = conv_norm(self.conv3, self.bn3, out, fuse)
        return self.relu(out + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))


class ResNet(nn.Module):
    def __init__(self, depth: int = 50, variant: str = "v1b", norm: str = "frozen_bn", freeze_at: int = 2,
                 base_width: int = 64, out_features: tuple[str, ...] = ("c2", "c3", "c4", "c5"),
                 fuse_frozen_bn: bool = True) -> None:
        super().__init__()
        if depth not in _ARCH:
            raise ValueError(f"ResNet depth must be one of {sorted(_ARCH)}, got {depth}")
        if variant not in ("v1", "v1b"):
            raise ValueError(f"ResNet variant must be 'v1' or 'v1b', got {variant!r}")
        kind, blocks = _ARCH[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.out_features = tuple(out_features)

        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        in_ch = base_width
        self.out_channels: dict[str, int] = {}
        for stage, num_blocks in enumerate(blocks):
            width = base_width * 2**stage
            stride = 1 if stage == 0 else 2
            layers = []
            for i in range(num_blocks):
                layers.append(block(in_ch, width, stride if i == 0 else 1, norm, variant == "v1"))
                in_ch = width * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layers))
            self.out_channels[f"c{stage + 2}"] = in_ch

        self.fuse_frozen_bn = fuse_frozen_bn
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                m.fuse_frozen_bn = fuse_frozen_bn
        self._init_weights()
        self.freeze(freeze_at)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients in the stem (freeze_at >= 1) and stages 1..freeze_at-1 (c2 when >= 2)."""
        stages = [[self.conv1, self.bn1]] + [[getattr(self, f"layer{i}")] for i in range(1, 5)]
        for modules in stages[:freeze_at]:
            for module in modules:
                for p in module.parameters():
                    p.requires_grad_(False)

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x, self.fuse_frozen_bn)))
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            name = f"c{i + 1}"
            if name in self.out_features:
                out[name] = x
            if all(f in out for f in self.out_features):
                break
        return out


@dataclass
class ResNetConfig:
    """depth 18/34/50/101/152; variant "v1" (MSRA) or "v1b" (GluonCV); norm "frozen_bn" for
    pretrained backbones, "bn" or "gn" for training from scratch; freeze_at 2 freezes the stem and
    stage 1 as the zoo does, 0 trains everything. `pretrained` is a local weights file or None."""

    depth: int = 50
    variant: str = "v1b"
    norm: str = "frozen_bn"
    freeze_at: int = 2
    base_width: int = 64
    out_features: tuple[str, ...] = ("c2", "c3", "c4", "c5")
    pretrained: str | None = None
    # fold frozen BN into the convolutions (faster; equal up to float rounding). False gives
    # torchvision's exact arithmetic, which the torchvision parity configs use.
    fuse_frozen_bn: bool = True

    def build(self) -> ResNet:
        return ResNet(self.depth, self.variant, self.norm, self.freeze_at, self.base_width, self.out_features,
                      self.fuse_frozen_bn)
