"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

FPG and PAFPN (models/FPG/builder.py). Column 0 of both grids: `S0_P{n}` (n = 2..6) ->
neck.laterals.convs.{n - 2}. In SimpleDet's pathway names the level is an index (P0 = P2), the
convolution carries the stage it reads from (mxnext's reluconvbn names its weight with an explicit
prefix) and the BN the stage it feeds (its name takes the mx.name.Prefix of the stage being built):

- `S{s}_P{i}_sameup_conv` and its BN `S{s}_P{i}_sameup_conv_bn_neck` -> neck.stages.{s-1}.same_up.p{i+2}
- `S{s-1}_P{i}_across{up,same,down}_conv`, BN `S{s}_P{i}_across..._conv_bn_neck`
  -> neck.stages.{s-1}.across_{up,same,down}.p{i+2}
- `S0_2_{s}P{i}_acrossskip_conv`, BN `S{s}_P{i}_acrossskip_conv_bn_neck` -> neck.stages.{s-1}.across_skip.p{i+2}
- `S{s}_P{n}` (the 3x3 conv over the sum) -> neck.stages.{s-1}.fuse_convs.{n-2}
- PAFPN: `S{s}_P{n}_1` (top-down) / `S{s}_P{n}_2` (bottom-up) and their `_bn_neck`
  -> neck.stages.{s-1}.top_down.p{n} / bottom_up.p{n}
- The PAFPN configs' 2fc head has a BN after each layer: `bbox_fc{k}_bn` -> roi_heads.box_head.norms.{k-1}.
"""

from simpledet.weights.rename import RenameRule

_KIND = {"sameup": "same_up", "acrossup": "across_up", "acrosssame": "across_same", "acrossdown": "across_down",
         "acrossskip": "across_skip"}
_PAFPN_PATH = {"1": "top_down", "2": "bottom_up"}

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"S0_P([2-6])$", lambda m: f"neck.laterals.convs.{int(m[1]) - 2}"),
    # a pathway's BN: named after the stage it feeds
    RenameRule(r"S(\d+)_P([0-4])_(sameup|acrossup|acrosssame|acrossdown|acrossskip)_conv_bn_neck$",
               lambda m: f"neck.stages.{int(m[1]) - 1}.{_KIND[m[3]]}.p{int(m[2]) + 2}.norm"),
    # a pathway's conv: named after the stage it reads (same_up: its own stage; skip: column 0 -> s)
    RenameRule(r"S(\d+)_P([0-4])_sameup_conv$", lambda m: f"neck.stages.{int(m[1]) - 1}.same_up.p{int(m[2]) + 2}.conv"),
    RenameRule(r"S(\d+)_P([0-4])_(acrossup|acrosssame|acrossdown)_conv$",
               lambda m: f"neck.stages.{m[1]}.{_KIND[m[3]]}.p{int(m[2]) + 2}.conv"),
    RenameRule(r"S0_2_(\d+)P([0-4])_acrossskip_conv$",
               lambda m: f"neck.stages.{int(m[1]) - 1}.across_skip.p{int(m[2]) + 2}.conv"),
    RenameRule(r"S(\d+)_P([2-6])$", lambda m: f"neck.stages.{int(m[1]) - 1}.fuse_convs.{int(m[2]) - 2}"),
    # PAFPN
    RenameRule(r"S(\d+)_P([2-6])_([12])_bn_neck$",
               lambda m: f"neck.stages.{int(m[1]) - 1}.{_PAFPN_PATH[m[3]]}.p{m[2]}.norm"),
    RenameRule(r"S(\d+)_P([2-6])_([12])$", lambda m: f"neck.stages.{int(m[1]) - 1}.{_PAFPN_PATH[m[3]]}.p{m[2]}.conv"),
    # the 2fc head with SyncBN
    RenameRule(r"bbox_fc([12])_bn$", lambda m: f"roi_heads.box_head.norms.{int(m[1]) - 1}"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
