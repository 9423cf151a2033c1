"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

FCOS (models/FCOS/builder.py FCOSFPNHead): the towers' convs are shared by every level
(`shared_conv{i}_3x3` on the classification side, `offset_conv{i}_3x3` on the box side), their
GroupNorms are per level (`shared_gn{i}_3x3_{stride}`, SimpleDet's own GroupNorm op: gamma and
beta per channel, named _scale and _bias); `offset_conv5_3x3` predicts the distances, scaled by
`offset_scale_{stride}_w` (1, 1, 1, 1) before the exp. Level 0 is stride 8 (P3).
"""

import re

from simpledet.weights.rename import RenameRule

_TOWER = {"shared": "cls_tower", "offset": "box_tower"}


def _level(stride: str) -> int:
    return int(stride).bit_length() - 4  # 8 -> 0 (P3), 16 -> 1, ... 128 -> 4


def _norm(m: re.Match) -> str:
    # _bias reaches the rules without its suffix; _scale is not a suffix the converter knows: whole
    return f"head.{_TOWER[m[1]]}.norms.{_level(m[3])}.{int(m[2]) - 1}" + (".weight" if m[4] else "")


# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"(shared|offset)_gn(\d)_3x3_(\d+)(_scale)?$", _norm),
    RenameRule(r"(shared|offset)_conv([1-4])_3x3$", lambda m: f"head.{_TOWER[m[1]]}.convs.{int(m[2]) - 1}"),
    RenameRule(r"offset_conv5_3x3$", "head.box_pred"),
    RenameRule(r"cls_conv_3x3$", "head.cls_pred"),
    RenameRule(r"centerness_conv_3x3$", "head.centerness"),
    RenameRule(r"offset_scale_(\d+)_w$", lambda m: f"head.scales.{_level(m[1])}.weight"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
