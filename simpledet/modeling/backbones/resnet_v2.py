"""ResNet v2 (pre-activation, He et al. 2016), as MXNet's model-gallery resnet-50 / resnet-101 that
SimpleDet's "r50v2" / "r101v2" configs start from (mxnext.backbone.resnet_v2, variant "mxnet").

    data_bn (MXNet bn_data: input whitening, fix_gamma) -> conv1 7x7/2 -> bn1 -> relu -> maxpool
    unit:  a = relu(bn1(x));  sc = downsample(a) (1x1 conv, no BN) if the shape changes, else x
           out = conv3(relu(bn3(conv2(relu(bn2(conv1(a)))))))  (stride and dilation in the 3x3 conv2)
           return out + sc
    after stage 4: final_bn -> relu (MXNet's top-level bn1; SimpleDet's v2 C5 head applies it)

c2..c4 are the raw residual sums, as mxnext returns them (no BN); c5, when built, is
relu(final_bn(stage 4)). Frozen BN folds into the conv before it (conv1 + bn2, conv2 + bn3, the
stem's conv1 + bn1); a unit's bn1 comes before a ReLU, so it stays a separate (cheap) affine.

Names are torchvision-like (layerN.M.convK / bnK, with bnK the BN *before* convK), so that the
MXNet names map by a plain table (simpledet/weights/mxnet_names.py).
"""

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from simpledet.modeling.backbones.resnet import STAGE_NAMES, ResNetBase, init_weights
from simpledet.modeling.norm import conv_norm, make_norm

_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


class PreActBottleneck(nn.Module):
    def __init__(self, *, in_ch: int, width: int, stride: int, norm: str, dilation: int, fuse_frozen_bn: bool) -> None:
        super().__init__()
        out_ch = width * 4
        self.fuse_frozen_bn = fuse_frozen_bn
        self.bn1 = make_norm(norm, in_ch)
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, bias=False)
        self.bn3 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        # MXNet's "sc": a projection of the pre-activated input, without BN
        self.downsample = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: Tensor, dilation: int | None = None) -> Tensor:
        """dilation: conv2's dilation (and padding) for this call instead of its own (TridentNet)."""
        fuse = self.fuse_frozen_bn
        act = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(act)
        out = self.relu(conv_norm(self.conv1, self.bn2, act, fuse))
        out = self.relu(conv_norm(self.conv2, self.bn3, out, fuse, dilation))
        out = self.conv3(out)
        out += shortcut  # in place: no extra full-size tensor
        return out


def make_stage_v2(*, in_channels: int, width: int, num_blocks: int, stride: int, norm: str, dilation: int,
                  fuse_frozen_bn: bool) -> nn.Sequential:
    """One pre-activation stage as ResNetV2 builds it (names `0.bn1`, `0.downsample`, ...). The
    final BN + ReLU after stage 4 is not part of it: a C5 head adds its own `final_bn`."""
    blocks = []
    for i in range(num_blocks):
        blocks.append(PreActBottleneck(in_ch=in_channels, width=width, stride=stride if i == 0 else 1, norm=norm,
                                       dilation=dilation, fuse_frozen_bn=fuse_frozen_bn))
        in_channels = width * 4
    stage = nn.Sequential(*blocks)
    init_weights(stage)
    return stage


class ResNetV2(ResNetBase):
    def __init__(self, *, depth: int, norm: str, freeze_at: int, out_features: tuple[str, ...], fuse_frozen_bn: bool,
                 data_bn: bool, base_width: int, strides: tuple[int, ...], dilations: tuple[int, ...]) -> None:
        if depth not in _BLOCKS:
            raise ValueError(f"ResNetV2 depth must be one of {sorted(_BLOCKS)}, got {depth}")
        super().__init__(norm=norm, base_width=base_width, data_bn=data_bn, fuse_frozen_bn=fuse_frozen_bn,
                         out_features=out_features)
        in_ch = base_width
        for i in range(self.num_stages):
            width = base_width * 2**i
            self.add_module(f"layer{i + 1}", make_stage_v2(in_channels=in_ch, width=width, num_blocks=_BLOCKS[depth][i],
                                                           stride=strides[i], norm=norm, dilation=dilations[i],
                                                           fuse_frozen_bn=fuse_frozen_bn))
            in_ch = width * 4
            self.stage_channels[STAGE_NAMES[i]] = in_ch
        self.final_bn = make_norm(norm, in_ch) if self.num_stages == 4 else None
        init_weights(self)
        self.freeze(freeze_at)

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        x = self.stem(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i in range(self.num_stages):
            x = self.stage(i)(x)
            if i == 3:
                x = self.relu(self.final_bn(x))
            if STAGE_NAMES[i] in self.out_features:
                out[STAGE_NAMES[i]] = x
        return out


@dataclass
class ResNetV2Config:
    """depth 50/101/152/200; the fields mean what they mean in ResNetConfig. data_bn: MXNet's
    input whitening BN (bn_data), part of the gallery models; the input normalisation for these
    weights is then 0-255 RGB with no mean / std (bn_data does it)."""

    depth: int = 50
    norm: str = "frozen_bn"
    freeze_at: int = 2
    out_features: tuple[str, ...] = STAGE_NAMES
    pretrained: str | None = None
    fuse_frozen_bn: bool = True
    data_bn: bool = True
    base_width: int = 64  # stem channels and stage-1 planes; smaller for slim models trained from scratch
    strides: tuple[int, ...] = (1, 2, 2, 2)  # per stage; (1, 2, 2, 1) + dilation 2 keeps C5 at stride 16
    dilations: tuple[int, ...] = (1, 1, 1, 1)

    def build(self) -> ResNetV2:
        return ResNetV2(depth=self.depth, norm=self.norm, freeze_at=self.freeze_at, out_features=self.out_features,
                        fuse_frozen_bn=self.fuse_frozen_bn, data_bn=self.data_bn, base_width=self.base_width,
                        strides=self.strides, dilations=self.dilations)
