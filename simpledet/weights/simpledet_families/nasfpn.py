"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

models/NASFPN/builder.py (and models/FPG/builder.py PAFPNNeckP3P7, which the TD-BU config uses):
- the stem's 1x1 convs `S0_P{3..7}` -> neck.stem.convs.{0..4};
- cell k's node `S{k}_P{n}_{m}` (conv) and `S{k}_P{n}_{m}_bn_neck` (its norm, mxnext's reluconvbn)
  -> neck.cells.{k-1}.p{n}_{m}.conv / .norm; in a TD-BU cell (pafpn.py's TopDownBottomUp) node
  m = 1 is the top-down path's and m = 2 the bottom-up path's: neck.cells.{k-1}.top_down.p{n} /
  bottom_up.p{n} (a rule whose target the model lacks gives way to the next);
- the baseline's FPN with BN (RetinaNetNeckWithBN): `P{3..5}_conv_bn` -> neck.output_norms.{0..2},
  `P6_conv_bn` / `P7_conv_bn` -> neck.p6_norm / neck.p7_norm (the convs map as the plain FPN's);
- the head's per-level norms (RetinaNetHeadWithBN) `{cls,bbox}_conv{i}_bn_s{stride}`
  -> head.{cls,box}_subnet.norms.{level - 3}.{i - 1}, level = log2(stride).
"""

import math

from simpledet.weights.rename import RenameRule

_SUBNET = {"cls": "cls_subnet", "bbox": "box_subnet"}
_TDBU_PATH = {"1": "top_down", "2": "bottom_up"}

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"S0_P([3-7])$", lambda m: f"neck.stem.convs.{int(m[1]) - 3}"),
    RenameRule(r"S(\d+)_P([3-7])_([12])_bn_neck$",
               lambda m: f"neck.cells.{int(m[1]) - 1}.{_TDBU_PATH[m[3]]}.p{m[2]}.norm"),
    RenameRule(r"S(\d+)_P([3-7])_([12])$", lambda m: f"neck.cells.{int(m[1]) - 1}.{_TDBU_PATH[m[3]]}.p{m[2]}.conv"),
    RenameRule(r"S(\d+)_P([3-7])_(\d+)_bn_neck$", lambda m: f"neck.cells.{int(m[1]) - 1}.p{m[2]}_{m[3]}.norm"),
    RenameRule(r"S(\d+)_P([3-7])_(\d+)$", lambda m: f"neck.cells.{int(m[1]) - 1}.p{m[2]}_{m[3]}.conv"),
    RenameRule(r"P([3-5])_conv_bn$", lambda m: f"neck.output_norms.{int(m[1]) - 3}"),
    RenameRule(r"P([67])_conv_bn$", r"neck.p\1_norm"),
    RenameRule(r"(cls|bbox)_conv(\d+)_bn_s(\d+)$",
               lambda m: f"head.{_SUBNET[m[1]]}.norms.{int(math.log2(int(m[3]))) - 3}.{int(m[2]) - 1}"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
