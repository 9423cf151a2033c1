"""SimpleDet's parameter names, one module per family beyond the core zoo (each holds RULES,
SKIP and NO_BIAS; simpledet_checkpoint.py reads them after its own rules)."""

from simpledet.weights.simpledet_families import (
    crowdhuman,
    dual_head,
    efficientnet,
    fcos,
    fpg,
    free_anchor,
    group_norm,
    mask_scoring,
    nasfpn,
    reppoints,
    se_resnet,
    sepc,
)

FAMILIES = (fcos, free_anchor, reppoints, nasfpn, fpg, sepc, efficientnet, mask_scoring, dual_head, crowdhuman,
            se_resnet, group_norm)
RULES = tuple(rule for family in FAMILIES for rule in family.RULES)
SKIP = tuple(skip for family in FAMILIES for skip in family.SKIP)
NO_BIAS = tuple(suffix for family in FAMILIES for suffix in family.NO_BIAS)
