"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

RepPoints (models/RepPoints/builder.py): the neck is the FPN on C3-C5 (P*_lateral / P*_conv / P6_conv /
P7_conv land by the core rules) with a GroupNorm after each conv (`P3_lateral_gn`, `P6_conv_gn`, ...);
the head's subnets `cls_conv1..3` / `reg_conv1..3` are shared by the levels, their GroupNorms are per
level (`cls_conv1_gn_s8` ... `_s128`); `pts_init_conv` / `pts_init_out`, the deformable `cls_conv` /
`pts_refine_conv`, `cls_out`, `pts_refine_out`, and the moment transform's `moment_transfer` (no suffix)."""

import math

from simpledet.weights.rename import RenameRule

_LOWEST_LEVEL = 3  # RepPointsNeck takes C3-C5
_FIRST_STRIDE = 8  # P3


def _level(stride: str) -> int:
    return int(math.log2(int(stride) // _FIRST_STRIDE))


# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"P(\d)_lateral_gn$", lambda m: f"neck.lateral_norms.{int(m[1]) - _LOWEST_LEVEL}"),
    RenameRule(r"P([67])_conv_gn$", r"neck.p\1_norm"),
    RenameRule(r"P(\d)_conv_gn$", lambda m: f"neck.output_norms.{int(m[1]) - _LOWEST_LEVEL}"),
    RenameRule(r"(cls|reg)_conv(\d)_gn_s(\d+)$", lambda m: f"head.{m[1]}_norms.{_level(m[3])}.{int(m[2]) - 1}"),
    RenameRule(r"(cls|reg)_conv(\d)$", lambda m: f"head.{m[1]}_convs.{int(m[2]) - 1}"),
    RenameRule(r"(pts_init_conv|pts_init_out|cls_conv|cls_out|pts_refine_conv|pts_refine_out)$", r"head.\1"),
    RenameRule(r"moment_transfer$", "head.moment_transfer"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
