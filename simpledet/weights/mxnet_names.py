"""SimpleDet's (mxnext) names for the ResNet parameters, and ours: "stage3_unit2_conv2_offset_weight"
-> "layer3.1.conv2.offset_conv.weight". Shapes are the same on both sides (convolution weights are
(out, in / groups, k, k) in both). MXNet's BatchNorm suffixes gamma / beta / moving_mean /
moving_var are our weight / bias / running_mean / running_var."""

import re

from simpledet.weights.rename import RenameRule, rename

MXNET_PARAMS = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                "moving_mean": "running_mean", "moving_var": "running_var"}
_NAME = re.compile(r"^(.+?)_(weight|bias|gamma|beta|moving_mean|moving_var)$")
# bn_data is a BatchNorm with fix_gamma=True (mxnext's `whiten`): its gamma acts as 1 whatever the
# file holds, so a loader must write ones into data_bn.weight. Every other BN has fix_gamma=False.
MXNET_FIX_GAMMA = ("bn_data_gamma",)


def _unit(layer: str):
    """stageN_unitM_<layer> -> layerN.{M - 1}.<ours>"""
    return lambda m: f"layer{m[1]}.{int(m[2]) - 1}.{layer or m[3]}"


_UNIT = r"stage(\d)_unit(\d+)_"
# the layers of a unit (v1 / v1b / ResNeXt / DCN) and the stem
RESNET_RULES = (
    RenameRule(_UNIT + r"sc_bn$", _unit("downsample.1")),
    RenameRule(_UNIT + r"sc$", _unit("downsample.0")),
    RenameRule(_UNIT + r"conv2_offset$", _unit("conv2.offset_conv")),
    RenameRule(_UNIT + r"(conv[123]|bn[123])$", _unit("")),
    RenameRule(r"bn_data$", "data_bn"),
    RenameRule(r"conv0$", "conv1"),
    RenameRule(r"bn0$", "bn1"),
)
# the pre-activation ResNet v2: the shortcut is a bare conv, and a BN (`bn1`) follows stage 4
RESNET_V2_RULES = (
    RenameRule(_UNIT + r"sc$", _unit("downsample")),
    RenameRule(r"bn1$", "final_bn"),
    *(rule for rule in RESNET_RULES if "sc" not in rule.pattern),
)


def mxnet_resnet_key(name: str, v2: bool = False) -> str:
    """Our state_dict key for SimpleDet's name of a ResNet parameter or BN statistic (arg or aux);
    KeyError for a name outside the backbone (the ImageNet classifier, a head)."""
    m = _NAME.match(name)
    renamed = rename(m[1], RESNET_V2_RULES if v2 else RESNET_RULES) if m else None
    if renamed is None:
        raise KeyError(f"not a SimpleDet ResNet{' v2' if v2 else ''} parameter name: {name!r}")
    return f"{renamed[0]}.{MXNET_PARAMS[m[2]]}"
