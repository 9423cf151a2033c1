"""ResNet backbones: v1 (MSRA, stride in the first 1x1 conv) and v1b (GluonCV / torchvision,
stride in the 3x3 conv), depths 18 to 152; ResNeXt (grouped 3x3 conv), deformable 3x3 convs (DCN),
dilated stages, and truncated backbones that build only the stages their outputs need.

Parameter names follow torchvision's ResNet (conv1, bn1, layer1..layer4, downsample.0/1) so that
classification checkpoints load without renaming. The forward pass returns the stage outputs named
c2..c5 (strides 4..32), the names the necks and heads use. `make_stage` builds one stage exactly as
the backbone does, so a C4 detector's RoI head can own "layer4" and load the same weights.
SimpleDet's MXNet names for these parameters are in simpledet/weights/mxnet_names.py.
"""

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
STAGE_NAMES = ("c2", "c3", "c4", "c5")


@dataclass(frozen=True)
class DCNSpec:
    """Deformable conv2 in the last `num_blocks` blocks of a stage (SimpleDet's num_cX_block)."""

    num_blocks: int
    deformable_groups: int = 4
    modulated: bool = False


def _conv_norm(conv: nn.Module, norm: nn.Module, x: Tensor, fuse: bool, dilation: int | None = None) -> Tensor:
    """conv_norm for plain and deformable convs (a frozen BN folds into either)."""
    if isinstance(conv, DeformConv2d):
        if fuse and isinstance(norm, FrozenBatchNorm2d):
            return conv(x, *norm.scale_and_shift())
        return norm(conv(x))
    return conv_norm(conv, norm, x, fuse, dilation)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, *, in_ch: int, width: int, stride: int, norm: str, stride_in_1x1: bool, groups: int,
                 width_per_group: int, dilation: int, dcn: DCNSpec | None, fuse_frozen_bn: bool) -> None:
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

    @property
    def out_channels(self) -> int:
        return self.conv2.out_channels

    def forward(self, x: Tensor, dilation: int | None = None) -> Tensor:
        """dilation: conv2's dilation (and padding) for this call instead of its own (TridentNet's
        branches share the block's weights at several dilations)."""
        fuse = self.fuse_frozen_bn
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x, fuse)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, fuse))
        out = conv_norm(self.conv2, self.bn2, out, fuse, dilation)
        out += identity  # in place, as torchvision's blocks: no extra full-size tensor
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, *, in_ch: int, width: int, stride: int, norm: str, stride_in_1x1: bool, groups: int,
                 width_per_group: int, dilation: int, dcn: DCNSpec | None, fuse_frozen_bn: bool) -> None:
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
        self.se: nn.Module | None = None  # squeeze-excitation after the 3x3 conv (SE-ResNet, se_resnet.py)

    @property
    def out_channels(self) -> int:
        return self.conv3.out_channels

    def forward(self, x: Tensor, dilation: int | None = None) -> Tensor:
        """dilation: conv2's dilation (and padding) for this call instead of its own (TridentNet's
        branches share the block's weights at several dilations)."""
        fuse = self.fuse_frozen_bn
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x, fuse)
        out = self.relu(conv_norm(self.conv1, self.bn1, x, fuse))
        out = self.relu(_conv_norm(self.conv2, self.bn2, out, fuse, dilation))
        if self.se is not None:
            out = self.se(out)
        out = conv_norm(self.conv3, self.bn3, out, fuse)
        out += identity  # in place, as torchvision's blocks: no extra full-size tensor
        return self.relu(out)


def _shortcut(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))


def init_weights(module: nn.Module) -> None:
    """He (fan-out) initialisation of the convolutions, unit norms, zero DCN offsets."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, DeformConv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which also reached the offset convs
        if isinstance(m, DeformConv2d):
            m.reset_offsets()


def make_stage(*, block: str, in_channels: int, width: int, num_blocks: int, stride: int, norm: str,
               variant: str, groups: int, width_per_group: int, dilation: int, fuse_frozen_bn: bool,
               dcn: DCNSpec | None = None) -> nn.Sequential:
    """One ResNet stage, built and initialised as the backbone builds it: the same module names
    (`0.conv1`, `0.downsample.0`, ...), so a head's stage loads a backbone checkpoint's "layerN".

    width: the stage's "planes" (64 * 2**i; output channels width * 4 for bottlenecks); stride on
    the first block; dilation (with padding = dilation) on every 3x3 conv; dcn: deformable conv2 in
    the last dcn.num_blocks blocks."""
    stage = _build_stage(block=block, in_channels=in_channels, width=width, num_blocks=num_blocks, stride=stride,
                         norm=norm, variant=variant, groups=groups, width_per_group=width_per_group,
                         dilation=dilation, fuse_frozen_bn=fuse_frozen_bn, dcn=dcn)
    init_weights(stage)
    return stage


def _build_stage(*, block: str, in_channels: int, width: int, num_blocks: int, stride: int, norm: str,
                 variant: str, groups: int, width_per_group: int, dilation: int, fuse_frozen_bn: bool,
                 dcn: DCNSpec | None) -> nn.Sequential:
    if block not in ("bottleneck", "basic"):
        raise ValueError(f"block must be 'bottleneck' or 'basic', got {block!r}")
    if variant not in ("v1", "v1b"):
        raise ValueError(f"ResNet variant must be 'v1' or 'v1b', got {variant!r}")
    block_type = Bottleneck if block == "bottleneck" else BasicBlock
    first_dcn = num_blocks - (dcn.num_blocks if dcn else 0)
    blocks = []
    for i in range(num_blocks):
        blocks.append(block_type(in_ch=in_channels, width=width, stride=stride if i == 0 else 1, norm=norm,
                                 stride_in_1x1=variant == "v1", groups=groups, width_per_group=width_per_group,
                                 dilation=dilation, dcn=dcn if i >= first_dcn else None, fuse_frozen_bn=fuse_frozen_bn))
        in_channels = width * block_type.expansion
    return nn.Sequential(*blocks)


class ResNetBase(nn.Module):
    """What ResNet and its pre-activation form share: the stem (MXNet's input whitening `data_bn`
    where the weights have one, 7x7 conv, norm, ReLU, max pool), stages named layer1.. whose
    outputs are c2.., freezing, and the output contract (`output_shape`)."""

    def __init__(self, *, norm: str, base_width: int, data_bn: bool, fuse_frozen_bn: bool,
                 out_features: tuple[str, ...]) -> None:
        super().__init__()
        if not out_features or any(f not in STAGE_NAMES for f in out_features):
            raise ValueError(f"out_features must be a non-empty subset of {STAGE_NAMES}, got {out_features}")
        self.out_features = tuple(out_features)
        self.fuse_frozen_bn = fuse_frozen_bn
        # only the stages up to the last requested output (C4 detectors put stage 5 in the head)
        self.num_stages = max(STAGE_NAMES.index(f) for f in self.out_features) + 1
        self.stage_channels: dict[str, int] = {}  # of every built stage
        # MXNet's input whitening (bn_data of the ResNeXt and v2 model files): fixed statistics
        self.data_bn = FrozenBatchNorm2d(3) if data_bn else None
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def stem(self, x: Tensor) -> Tensor:
        if self.data_bn is not None:
            x = self.data_bn(x)  # not folded into conv1: its zero padding would no longer be zero
        return self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x, self.fuse_frozen_bn)))

    def stage(self, index: int) -> nn.Sequential:
        """layer{index + 1}, whose output is STAGE_NAMES[index]."""
        return self.get_submodule(f"layer{index + 1}")

    def output_shape(self) -> dict[str, int]:
        """Channels of each feature the forward pass returns, by name."""
        return {name: self.stage_channels[name] for name in self.out_features}

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients in the stem (conv1, bn1; freeze_at >= 1) and the stages
        layer1..layer{freeze_at - 1} (c2 when >= 2), as SimpleDet's and torchvision's backbones do."""
        parts = [[self.conv1, self.bn1]] + [[self.stage(i)] for i in range(self.num_stages)]
        for modules in parts[:freeze_at]:
            for module in modules:
                for p in module.parameters():
                    p.requires_grad_(False)


class ResNet(ResNetBase):
    def __init__(self, *, depth: int, variant: str, norm: str, freeze_at: int, base_width: int,
                 out_features: tuple[str, ...], fuse_frozen_bn: bool, groups: int, width_per_group: int,
                 strides: tuple[int, ...], dilations: tuple[int, ...], dcn_blocks: tuple[int, ...],
                 dcn_deformable_groups: int, dcn_modulated: bool, data_bn: bool) -> None:
        if depth not in _ARCH:
            raise ValueError(f"ResNet depth must be one of {sorted(_ARCH)}, got {depth}")
        super().__init__(norm=norm, base_width=base_width, data_bn=data_bn, fuse_frozen_bn=fuse_frozen_bn,
                         out_features=out_features)
        block, blocks = _ARCH[depth]
        for name, value in (("strides", strides), ("dilations", dilations), ("dcn_blocks", dcn_blocks)):
            if len(value) != 4:
                raise ValueError(f"ResNet {name} needs one value per stage (4), got {value}")
        if any(n > b for n, b in zip(dcn_blocks, blocks)):
            raise ValueError(f"dcn_blocks {dcn_blocks} exceeds the blocks per stage {blocks}")
        # None where v1 and v1b are the same network (basic blocks, or no strided stage built)
        self.variant = variant if block == "bottleneck" and self.num_stages >= 2 else None
        in_ch = base_width
        for i in range(self.num_stages):
            dcn = DCNSpec(dcn_blocks[i], dcn_deformable_groups, dcn_modulated) if dcn_blocks[i] else None
            stage = _build_stage(block=block, in_channels=in_ch, width=base_width * 2**i, num_blocks=blocks[i],
                               stride=strides[i], norm=norm, variant=variant, groups=groups,
                               width_per_group=width_per_group, dilation=dilations[i],
                               fuse_frozen_bn=fuse_frozen_bn, dcn=dcn)
            self.add_module(f"layer{i + 1}", stage)
            in_ch = stage[-1].out_channels
            self.stage_channels[STAGE_NAMES[i]] = in_ch
        init_weights(self)
        self.freeze(freeze_at)

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        x = self.stem(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i in range(self.num_stages):
            x = self.stage(i)(x)
            if STAGE_NAMES[i] in self.out_features:
                out[STAGE_NAMES[i]] = x
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
    out_features: tuple[str, ...] = STAGE_NAMES
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
        return ResNet(depth=self.depth, variant=self.variant, norm=self.norm, freeze_at=self.freeze_at,
                      base_width=self.base_width, out_features=self.out_features, fuse_frozen_bn=self.fuse_frozen_bn,
                      groups=self.groups, width_per_group=self.width_per_group, strides=self.strides,
                      dilations=self.dilations, dcn_blocks=self.dcn_blocks,
                      dcn_deformable_groups=self.dcn_deformable_groups, dcn_modulated=self.dcn_modulated,
                      data_bn=self.data_bn)
