"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

The dual box head (models/FPN/builder.py, FPNBboxDualHeadSmall): `bbox_cls_fc1` / `bbox_cls_fc2`
-> roi_heads.box_head.cls_fcs.0 / .1 (plain fully connected layers), `bbox_reg_block{i}` ->
reg_convs.{i-1} (no bias in SimpleDet nor ours). Its `bbox_cls_logit` and `bbox_reg_delta` are the
core rules' box_predictor.cls_score / bbox_pred; bbox_pred reads the flattened 256 x 7 x 7
regression feature in the same C-major order as MXNet's FullyConnected.
"""

from simpledet.weights.rename import RenameRule

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"bbox_cls_fc([12])$", lambda m: f"roi_heads.box_head.cls_fcs.{int(m[1]) - 1}"),
    RenameRule(r"bbox_reg_block(\d+)$", lambda m: f"roi_heads.box_head.reg_convs.{int(m[1]) - 1}"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
