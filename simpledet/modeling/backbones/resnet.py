"""ResNet backbones: v1 (MSRA, stride in the first 1x1 conv) and v1b (GluonCV / torchvision,
stride in the 3x3 conv), depths 18 to 152; ResNeXt (grouped 3x3 conv), deformable 3x3 convs (DCN),
dilated stages, and truncated backbones that build only the stages their outputs need.

Parameter names follow torchvision's ResNet (conv1, bn1, layer1..layer4, downsample.0/1) so that
classification checkpoints load without renaming. The forward pass returns the stage outputs named
c2..c5 (strides 4..32), the names the necks and heads use. `make_stage` builds one stage exactly as
the backbone does, so a C4 detector's RoI head can own "layer4" and load the same weights.
`mxnet_name_map` renames SimpleDet's (mxnext) parameter names to ours.
"""

import re
from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from simpledet.modeling.layers.deform_conv import DeformConv2d
from simpledet.modeling.norm import FrozenBatchNorm2d, conv_norm, make_norm

# blocks per stage and block type, by depth
_ARCH = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_STAGES = ("c2", "c3", "c4", "c5")


@dataclass(frozen=True)
class DCNSpec:
    """Deformable conv2 in the last `num_blocks` blocks of a stage (SimpleDet's num_cX_block)."""

    num_blocks: int
    deformable_groups: int = 4
    modulated: bool = False


def _conv_norm(conv: nn.Module, norm: nn.Module, x: Tensor, fuse: bool) -> Tensor:
    """conv_norm for plain and deformable convs (a frozen BN folds into either)."""
    if isinstance(conv, DeformConv2d):
        if fuse and isinstance(norm, FrozenBatchNorm2d):
            return conv(x, *norm.scale_and_shift())
        return norm(conv(x))
    return conv_norm(conv, norm, x, fuse)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, norm: str, stride_in_1x1: bool = False,
                 groups: int = 1, width_per_group: int = 64, dilation: int = 1, dcn: DCNSpec | None = None,
                 fuse_frozen_bn: bool = False) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64 or dcn is not None:
            raise ValueError("BasicBlock has no grouped (ResNeXt) or deformable form: use a bottleneck depth")
        out_ch = width * self.expansion
        self.fuse_frozen_bn = fuse_frozen_bn
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, dilation, dilation, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, dilation, dilation, bias=False)
        self.bn2 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        fuse = self.fuse_frozen_bn
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x, fuse)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, fuse))
        out = conv_norm(self.conv2, self.bn2, out, fuse)
        out += identity  # in place, as torchvision's blocks: no extra full-size tensor
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, norm: str, stride_in_1x1: bool = False,
                 groups: int = 1, width_per_group: int = 64, dilation: int = 1, dcn: DCNSpec | None = None,
                 fuse_frozen_bn: bool = False) -> None:
        super().__init__()
        out_ch = width * self.expansion
        inner = int(width * width_per_group / 64) * groups  # torchvision's ResNeXt width rule
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.fuse_frozen_bn = fuse_frozen_bn
        self.conv1 = nn.Conv2d(in_ch, inner, 1, stride_1x1, bias=False)
        self.bn1 = make_norm(norm, inner)
        if dcn is None:
            self.conv2 = nn.Conv2d(inner, inner, 3, stride_3x3, dilation, dilation, groups, bias=False)
        else:
            self.conv2 = DeformConv2d(inner, inner, 3, stride_3x3, dilation, dilation, groups,
                                      dcn.deformable_groups, modulated=dcn.modulated)
        self.bn2 = make_norm(norm, inner)
        self.conv3 = nn.Conv2d(inner, out_ch, 1, bias=False)
        self.bn3 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        fuse = self.fuse_frozen_bn
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x, fuse)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, fuse))
        out = self.relu(_conv_norm(self.conv2, self.bn2, out, fuse))
        out = conv_norm(self.conv3, self.bn3, out, fuse)
        out += identity  # in place, as torchvision's blocks: no extra full-size tensor
        return self.relu(out)


def _shortcut(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))


def freeze_stem_and_stages(net: nn.Module, freeze_at: int) -> None:
    """Stop gradients in a ResNet's stem (conv1, bn1; freeze_at >= 1) and its stages
    layer1..layer{freeze_at - 1} (c2 when >= 2), as SimpleDet's and torchvision's backbones do."""
    stages = [[net.conv1, net.bn1]] + [[getattr(net, f"layer{i}")] for i in range(1, net.num_stages + 1)]
    for modules in stages[:freeze_at]:
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)


def _build_stage(block_kind: str, in_channels: int, width: int, num_blocks: int, stride: int, norm: str,
                 variant: str, groups: int, width_per_group: int, dilation: int, fuse_frozen_bn: bool,
                 dcn: DCNSpec | None) -> nn.Sequential:
    if block_kind not in ("bottleneck", "basic"):
        raise ValueError(f"block_kind must be 'bottleneck' or 'basic', got {block_kind!r}")
    if variant not in ("v1", "v1b"):
        raise ValueError(f"ResNet variant must be 'v1' or 'v1b', got {variant!r}")
    block = Bottleneck if block_kind == "bottleneck" else BasicBlock
    first_dcn = num_blocks - (dcn.num_blocks if dcn else 0)
    blocks = []
    for i in range(num_blocks):
        blocks.append(block(in_channels, width, stride if i == 0 else 1, norm, variant == "v1", groups,
                            width_per_group, dilation, dcn if i >= first_dcn else None, fuse_frozen_bn))
        in_channels = width * block.expansion
    return nn.Sequential(*blocks)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, DeformConv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which also reached the offset convs
        if isinstance(m, DeformConv2d):
            m.reset_offsets()


def make_stage(block_kind: str, in_channels: int, width: int, num_blocks: int, stride: int, norm: str,
               variant: str = "v1b", groups: int = 1, width_per_group: int = 64, dilation: int = 1,
               fuse_frozen_bn: bool = True, dcn: DCNSpec | None = None) -> nn.Sequential:
    """One ResNet stage, built (and initialised) as the backbone builds it: the same module names
    (`0.conv1`, `0.downsample.0`, ...), so a head's stage loads a backbone checkpoint's "layerN".

    width: the stage's "planes" (64 * 2**i; output channels width * 4 for bottlenecks); stride on
    the first block; dilation (with padding = dilation) on every 3x3 conv; dcn: deformable conv2 in
    the last dcn.num_blocks blocks."""
    stage = _build_stage(block_kind, in_channels, width, num_blocks, stride, norm, variant, groups,
                         width_per_group, dilation, fuse_frozen_bn, dcn)
    _init_weights(stage)
    return stage


class ResNet(nn.Module):
    def __init__(self, depth: int = 50, variant: str = "v1b", norm: str = "frozen_bn", freeze_at: int = 2,
                 base_width: int = 64, out_features: tuple[str, ...] = _STAGES, fuse_frozen_bn: bool = True,
                 groups: int = 1, width_per_group: int = 64, strides: tuple[int, ...] = (1, 2, 2, 2),
                 dilations: tuple[int, ...] = (1, 1, 1, 1), dcn_blocks: tuple[int, ...] = (0, 0, 0, 0),
                 dcn_deformable_groups: int = 4, dcn_modulated: bool = False, data_bn: bool = False) -> None:
        super().__init__()
        if depth not in _ARCH:
            raise ValueError(f"ResNet depth must be one of {sorted(_ARCH)}, got {depth}")
        if not out_features or any(f not in _STAGES for f in out_features):
            raise ValueError(f"out_features must be a non-empty subset of {_STAGES}, got {out_features}")
        kind, blocks = _ARCH[depth]
        for name, value in (("strides", strides), ("dilations", dilations), ("dcn_blocks", dcn_blocks)):
            if len(value) != 4:
                raise ValueError(f"ResNet {name} needs one value per stage (4), got {value}")
        if any(n > b for n, b in zip(dcn_blocks, blocks)):
            raise ValueError(f"dcn_blocks {dcn_blocks} exceeds the blocks per stage {blocks}")
        self.out_features = tuple(out_features)
        self.fuse_frozen_bn = fuse_frozen_bn

        # MXNet's input whitening (bn_data of the ResNeXt and v2 model files): fixed statistics
        self.data_bn = FrozenBatchNorm2d(3) if data_bn else None
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        # only the stages up to the last requested output (C4 detectors put stage 5 in the head)
        num_stages = max(_STAGES.index(f) for f in self.out_features) + 1
        in_ch = base_width
        self.out_channels: dict[str, int] = {}
        for i in range(num_stages):
            dcn = DCNSpec(dcn_blocks[i], dcn_deformable_groups, dcn_modulated) if dcn_blocks[i] else None
            stage = _build_stage(kind, in_ch, base_width * 2**i, blocks[i], strides[i], norm, variant, groups,
                                 width_per_group, dilations[i], fuse_frozen_bn, dcn)
            self.add_module(f"layer{i + 1}", stage)
            in_ch = base_width * 2**i * (Bottleneck if kind == "bottleneck" else BasicBlock).expansion
            self.out_channels[_STAGES[i]] = in_ch
        self.num_stages = num_stages
        _init_weights(self)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        freeze_stem_and_stages(self, freeze_at)

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        if self.data_bn is not None:
            x = self.data_bn(x)  # not folded into conv1: its zero padding would no longer be zero
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x, self.fuse_frozen_bn)))
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            if _STAGES[i] in self.out_features:
                out[_STAGES[i]] = x
        return out


@dataclass
class ResNetConfig:
    """depth 18/34/50/101/152; variant "v1" (MSRA) or "v1b" (GluonCV); norm "frozen_bn" for
    pretrained backbones, "bn" or "gn" for training from scratch; freeze_at 2 freezes the stem and
    stage 1 as the zoo does, 0 trains everything. `pretrained` is a local weights file or None.
    Only the stages up to the last of `out_features` are built (("c4",): no layer4)."""

    depth: int = 50
    variant: str = "v1b"
    norm: str = "frozen_bn"
    freeze_at: int = 2
    base_width: int = 64
    out_features: tuple[str, ...] = _STAGES
    pretrained: str | None = None
    # fold frozen BN into the convolutions (faster; equal up to float rounding). False gives
    # torchvision's exact arithmetic, which the torchvision parity configs use.
    fuse_frozen_bn: bool = True
    # ResNeXt: 3x3 conv groups and channels per group at 64 planes (bottleneck width =
    # int(planes * width_per_group / 64) * groups). X-101 32x8d: 32, 8; X-101 64x4d: 64, 4.
    groups: int = 1
    width_per_group: int = 64
    # per stage (layer1..layer4): stride of the first block; dilation (= padding) of the 3x3 convs
    strides: tuple[int, ...] = (1, 2, 2, 2)
    dilations: tuple[int, ...] = (1, 1, 1, 1)
    # per stage: how many of its last blocks get a deformable 3x3 conv (SimpleDet's num_c2..c5_block;
    # config/dcn/*: DCN rows (0, 0, 3, 0), DCNv2 rows (0, 4, 6, 0) for R50 and (0, 4, 23, 0) for R101)
    dcn_blocks: tuple[int, ...] = (0, 0, 0, 0)
    dcn_deformable_groups: int = 4
    dcn_modulated: bool = False  # DCNv2's mask; SimpleDet's "DCNv2" rows ran without it
    # MXNet's input whitening BN (bn_data), present in SimpleDet's ResNeXt model files
    data_bn: bool = False

    def build(self) -> ResNet:
        return ResNet(self.depth, self.variant, self.norm, self.freeze_at, self.base_width, self.out_features,
                      self.fuse_frozen_bn, self.groups, self.width_per_group, self.strides, self.dilations,
                      self.dcn_blocks, self.dcn_deformable_groups, self.dcn_modulated, self.data_bn)


# MXNet BatchNorm parameter / state suffixes -> PyTorch names
_MX_SUFFIX = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
              "moving_mean": "running_mean", "moving_var": "running_var"}
_MX_NAME = re.compile(r"^(?:stage(\d)_unit(\d+)_)?(.+?)_(weight|bias|gamma|beta|moving_mean|moving_var)$")
# per-unit layer names (v1 / v1b / ResNeXt / DCN); the stem's are in _MX_STEM
_MX_UNIT = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "bn1": "bn1", "bn2": "bn2", "bn3": "bn3",
            "sc": "downsample.0", "sc_bn": "downsample.1", "conv2_offset": "conv2.offset_conv"}
_MX_STEM = {"bn_data": "data_bn", "conv0": "conv1", "bn0": "bn1"}
# bn_data is a BatchNorm with fix_gamma=True (mxnext's `whiten`): its gamma acts as 1 whatever the
# file holds, so a loader must write ones into data_bn.weight. Every other BN has fix_gamma=False.
MXNET_FIX_GAMMA = ("bn_data_gamma",)


def mxnet_name_map(name: str) -> str:
    """SimpleDet's MXNet name (arg or aux) -> our state_dict key, for resnet_v1 / resnet_v1b /
    resnext / DCN models: "stage3_unit2_conv2_offset_weight" -> "layer3.1.conv2.offset_conv.weight".
    Shapes are the same on both sides (conv weights are (out, in / groups, k, k) in both).
    Raises KeyError for a name outside the backbone."""
    m = _MX_NAME.match(name)
    table = _MX_UNIT if m and m.group(1) else _MX_STEM
    if m is None or m.group(3) not in table:
        raise KeyError(f"not a SimpleDet ResNet parameter name: {name!r}")
    stage, unit, layer, suffix = m.groups()
    key = f"{table[layer]}.{_MX_SUFFIX[suffix]}"
    return f"layer{stage}.{int(unit) - 1}.{key}" if stage else key
