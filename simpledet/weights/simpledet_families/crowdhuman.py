"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

CrowdHuman (models/crowdhuman/builder.py): the FPN's BN (`P{n}_lateral_bn`, `P{n}_conv_bn`) maps by
the EfficientNet family's rules onto neck.lateral_norms / output_norms. The double-prediction head
(DoublePredBboxHead, simpledet/modeling/heads/double_pred_head.py): `bbox_cls_logit1` /
`bbox_reg_delta1` -> roi_heads.box_predictor, `..2` -> roi_heads.second_predictor; the refine
module's shared `bbox_fc3` -> roi_heads.refiner.fc and `refine_bbox_*{1,2}` ->
roi_heads.refiner.predictors.{0,1}. All are X.fc (2-d) and their deltas per class (num_reg_class = 2,
background first), as ours: no layout changes."""

from simpledet.weights.rename import RenameRule

_PREDICTOR = {"1": "roi_heads.box_predictor", "2": "roi_heads.second_predictor"}

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"bbox_cls_logit([12])$", lambda m: f"{_PREDICTOR[m[1]]}.cls_score"),
    RenameRule(r"bbox_reg_delta([12])$", lambda m: f"{_PREDICTOR[m[1]]}.bbox_pred"),
    RenameRule(r"bbox_fc3$", "roi_heads.refiner.fc"),
    RenameRule(r"refine_bbox_cls_logit([12])$", lambda m: f"roi_heads.refiner.predictors.{int(m[1]) - 1}.cls_score"),
    RenameRule(r"refine_bbox_reg_delta([12])$", lambda m: f"roi_heads.refiner.predictors.{int(m[1]) - 1}.bbox_pred"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
