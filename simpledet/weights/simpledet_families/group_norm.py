"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

Training from scratch (config/scratch, config/se): mxnext's normalizer names a norm after the layer it
follows, `<layer>_bn` (BN, SyncBN) or `<layer>_gn` (GroupNorm, whose names have every `_bn` turned
into `_gn`: the backbone's `stageN_unitM_gn1` / `_sc_gn`, while the stem keeps `bn0`). The FPN's and
2fc head's `_bn` names are the EfficientNet family's rules; their `_gn` twins, the mask head's
`mask_fcn_conv{i}_bn` / `_gn`, TridentNet's RPN `rpn_conv_3x3_bn` and its per-branch backbone norms
(`stage3_unitM_bn{k}_branch{b}`, SimpleDet's `branch_bn_shared = False`, models/tridentnet/resnet_v2.py;
also with deformable branches, whose offset convs keep ResNet's names) are here."""

from simpledet.weights.rename import RenameRule


def _branch_norm(m) -> str:
    """stage{s}_unit{u}_{bn1|bn2|bn3|sc_bn}_branch{b}: branch 0 is the block's own norm, branch b
    the copy in TridentBackbone.branch_norms."""
    stage, block, norm, branch = int(m[1]), int(m[2]) - 1, m[3], int(m[4])
    ours = "downsample" if norm == "sc_bn" else norm
    if branch == 0:
        return f"backbone.body.layer{stage}.{block}." + ("downsample.1" if ours == "downsample" else ours)
    return f"backbone.branch_norms.branch{branch}.{block}.{ours}"


# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    # ResNet units with GroupNorm (the stem's `bn0` maps by the ResNet rules)
    RenameRule(r"stage(\d)_unit(\d+)_gn([123])$", lambda m: f"backbone.layer{m[1]}.{int(m[2]) - 1}.bn{m[3]}"),
    RenameRule(r"stage(\d)_unit(\d+)_sc_gn$", lambda m: f"backbone.layer{m[1]}.{int(m[2]) - 1}.downsample.1"),
    # TridentNet's trident blocks with a norm per branch
    RenameRule(r"stage(\d)_unit(\d+)_(bn[123]|sc_bn)_branch(\d)$", _branch_norm),
    # FPN (neck/fpn_bn.py) and 2fc head (heads/box_head_bn.py) with GroupNorm
    RenameRule(r"P(\d)_lateral_gn$", r"neck.lateral_norms.p\1"),
    RenameRule(r"P(\d)_conv_gn$", r"neck.output_norms.p\1"),
    RenameRule(r"bbox_fc([12])_gn$", lambda m: f"roi_heads.box_head.norms.{int(m[1]) - 1}"),
    # the mask head's norms, and the RPN conv's (TridentNet)
    RenameRule(r"mask_fcn_conv(\d+)_[bg]n$", lambda m: f"roi_heads.mask_head.norms.{int(m[1]) - 1}"),
    RenameRule(r"rpn_conv_3x3_[bg]n$", "rpn.head.norm"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
