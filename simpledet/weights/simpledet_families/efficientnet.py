"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

EfficientNet (models/efficientnet/builder.py): the units' convs and BNs (`stageN_unitM_conv1`,
`_bn1`, ...) are ResNet's names and map by the ResNet rules onto `backbone.layerN.{M-1}`; the SE
convs need a rule. The FPN neck and 2fc head built with a trainable BN (models/FPN/builder.py
FPNNeck, symbol/builder.py Bbox2fcHead) add `P{n}_lateral_bn`, `P{n}_conv_bn` and `bbox_fc{i}_bn`
(simpledet/modeling/necks/fpn_bn.py, whose norms are keyed by level, and heads/box_head_bn.py)."""

from simpledet.weights.rename import RenameRule

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"stage(\d)_unit(\d+)_se2_(fc[12])$", lambda m: f"backbone.layer{m[1]}.{int(m[2]) - 1}.se.{m[3]}"),
    RenameRule(r"P(\d)_lateral_bn$", r"neck.lateral_norms.p\1"),
    RenameRule(r"P(\d)_conv_bn$", r"neck.output_norms.p\1"),
    RenameRule(r"bbox_fc([12])_bn$", lambda m: f"roi_heads.box_head.norms.{int(m[1]) - 1}"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
