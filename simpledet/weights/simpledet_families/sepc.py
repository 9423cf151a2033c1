"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

SEPC (models/sepc, models/NASFPN RetinaNetNeckWithBN): the FPN sits under neck.fpn with its BNs in
neck.fpn_norms (P3 = index 0); PConv{i}_sepc0 / sepc1 / sepc2 are the conv of the coarser level, of
the level itself and (stride 2) of the finer level; CConv / LConv and their iBNs are the branch
convs of the head's classification / box subnets, whose predictors sit under `.predictor`. The
folder's baseline keeps RetinaNet's own head names (cls_conv*, cls_pred: the core rules).
"""

from simpledet.weights.rename import RenameRule

_LOWEST_LEVEL = 3  # RetinaNet's P3
_PCONV = {"0": "from_coarser", "1": "same", "2": "from_finer"}
_BRANCH = {"C": "cls_subnet", "L": "box_subnet", "cls": "cls_subnet", "bbox": "box_subnet"}

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"P(\d)_lateral$", lambda m: f"neck.fpn.lateral_convs.{int(m[1]) - _LOWEST_LEVEL}"),
    RenameRule(r"P([67])_conv$", r"neck.fpn.p\1_conv"),
    RenameRule(r"P(\d)_conv$", lambda m: f"neck.fpn.output_convs.{int(m[1]) - _LOWEST_LEVEL}"),
    RenameRule(r"P(\d)_conv_bn$", lambda m: f"neck.fpn_norms.{int(m[1]) - _LOWEST_LEVEL}"),
    RenameRule(r"PConv(\d+)_sepc([012])$", lambda m: f"neck.pconvs.{m[1]}.{_PCONV[m[2]]}"),
    RenameRule(r"PConv(\d+)_sepc([012])_offset$", lambda m: f"neck.pconvs.{m[1]}.{_PCONV[m[2]]}.offset_conv"),
    RenameRule(r"PConv(\d+)_sepc_ibn$", lambda m: f"neck.pconvs.{m[1]}.norm"),
    RenameRule(r"([CL])Conv$", lambda m: f"head.{_BRANCH[m[1]]}.conv"),
    RenameRule(r"([CL])Conv_offset$", lambda m: f"head.{_BRANCH[m[1]]}.conv.offset_conv"),
    RenameRule(r"([cl])conv_ibn$", lambda m: f"head.{_BRANCH[m[1].upper()]}.norm"),
    RenameRule(r"(cls|bbox)_pred$", lambda m: f"head.{_BRANCH[m[1]]}.predictor.pred"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
