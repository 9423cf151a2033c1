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

Names are torchvision-like (layerN.M.convK / bnK, with bnK the BN *before* convK) so that
`mxnet_name_map_v2` is a plain table.
"""

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from simpledet.modeling.backbones.resnet import _STAGES, freeze_stem_and_stages, mxnet_name_map
from simpledet.modeling.norm import FrozenBatchNorm2d, conv_norm, make_norm

_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


class PreActBottleneck(nn.Module):
    def __init__(self, in_ch: int, width: int, stride: int, norm: str, dilation: int = 1,
                 fuse_frozen_bn: bool = False) -> None:
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

    def forward(self, x: Tensor) -> Tensor:
        fuse = self.fuse_frozen_bn
        act = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(act)
        out = self.relu(conv_norm(self.conv1, self.bn2, act, fuse))
        out = self.relu(conv_norm(self.conv2, self.bn3, out, fuse))
        out = self.conv3(out)
        out += shortcut  # in place: no extra full-size tensor
        return out


def make_stage_v2(in_channels: int, width: int, num_blocks: int, stride: int, norm: str, dilation: int = 1,
                  fuse_frozen_bn: bool = True) -> nn.Sequential:
    """One pre-activation stage as ResNetV2 builds it (names `0.bn1`, `0.downsample`, ...). The
    final BN + ReLU after stage 4 is not part of it: a C5 head adds its own `final_bn`."""
    blocks = []
    for i in range(num_blocks):
        blocks.append(PreActBottleneck(in_channels, width, stride if i == 0 else 1, norm, dilation, fuse_frozen_bn))
        in_channels = width * 4
    stage = nn.Sequential(*blocks)
    _init_weights(stage)
    return stage


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetV2(nn.Module):
    def __init__(self, depth: int = 50, norm: str = "frozen_bn", freeze_at: int = 2,
                 out_features: tuple[str, ...] = _STAGES, fuse_frozen_bn: bool = True, data_bn: bool = True,
                 base_width: int = 64, strides: tuple[int, ...] = (1, 2, 2, 2),
                 dilations: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        super().__init__()
        if depth not in _BLOCKS:
            raise ValueError(f"ResNetV2 depth must be one of {sorted(_BLOCKS)}, got {depth}")
        if not out_features or any(f not in _STAGES for f in out_features):
            raise ValueError(f"out_features must be a non-empty subset of {_STAGES}, got {out_features}")
        self.out_features = tuple(out_features)
        self.fuse_frozen_bn = fuse_frozen_bn
        self.data_bn = FrozenBatchNorm2d(3) if data_bn else None
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        self.num_stages = max(_STAGES.index(f) for f in self.out_features) + 1
        in_ch = base_width
        self.out_channels: dict[str, int] = {}
        for i in range(self.num_stages):
            width = base_width * 2**i
            self.add_module(f"layer{i + 1}", make_stage_v2(in_ch, width, _BLOCKS[depth][i], strides[i],
                                                           norm, dilations[i], fuse_frozen_bn))
            in_ch = width * 4
            self.out_channels[_STAGES[i]] = in_ch
        self.final_bn = make_norm(norm, in_ch) if self.num_stages == 4 else None
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
            if i == 3:
                x = self.relu(self.final_bn(x))
            if _STAGES[i] in self.out_features:
                out[_STAGES[i]] = x
        return out


@dataclass
class ResNetV2Config:
    """depth 50/101/152/200; the fields mean what they mean in ResNetConfig. data_bn: MXNet's
    input whitening BN (bn_data), part of the gallery models; the input normalisation for these
    weights is then 0-255 RGB with no mean / std (bn_data does it)."""

    depth: int = 50
    norm: str = "frozen_bn"
    freeze_at: int = 2
    out_features: tuple[str, ...] = _STAGES
    pretrained: str | None = None
    fuse_frozen_bn: bool = True
    data_bn: bool = True
    base_width: int = 64  # stem channels and stage-1 planes; smaller for slim models trained from scratch
    strides: tuple[int, ...] = (1, 2, 2, 2)  # per stage; (1, 2, 2, 1) + dilation 2 keeps C5 at stride 16
    dilations: tuple[int, ...] = (1, 1, 1, 1)

    def build(self) -> ResNetV2:
        return ResNetV2(self.depth, self.norm, self.freeze_at, self.out_features, self.fuse_frozen_bn, self.data_bn,
                        self.base_width, self.strides, self.dilations)


def mxnet_name_map_v2(name: str) -> str:
    """SimpleDet's (mxnext resnet_v2) name -> our state_dict key: "stage2_unit1_sc_weight" ->
    "layer2.0.downsample.weight", "bn1_gamma" (after stage 4) -> "final_bn.weight"; otherwise as
    resnet.mxnet_name_map (bn_data -> data_bn, conv0 -> conv1, bn0 -> bn1, stageN_unitM_X ->
    layerN.{M-1}.X). bn_data has fix_gamma=True (resnet.MXNET_FIX_GAMMA); the other BNs do not."""
    if name.startswith("bn1_"):
        return mxnet_name_map("bn0_" + name[4:]).replace("bn1.", "final_bn.", 1)
    return mxnet_name_map(name).replace(".downsample.0.", ".downsample.")
