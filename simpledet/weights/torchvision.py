"""torchvision detection checkpoints (state_dicts) -> our parameter names.

Covers fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, retinanet_resnet50_fpn (v1) and
fcos_resnet50_fpn, and any torchvision ResNet-FPN model of those families, in the current module
layout (Conv2dNormActivation: `conv.0.0`, `mask_head.0.0`) and that of older checkpoint files.
Names map one to one; BatchNorm's `num_batches_tracked` counters have no counterpart in a frozen
BN and are dropped.
"""

from torch import Tensor

from simpledet.weights.rename import RenameRule, rename

TORCHVISION_RULES = (
    # Faster R-CNN
    RenameRule(r"backbone\.body\.", "backbone."),
    RenameRule(r"backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"neck.lateral_convs.\1."),
    RenameRule(r"backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"neck.output_convs.\1."),
    RenameRule(r"rpn\.head\.conv\.(?:0\.0\.)?", "rpn.head.conv."),
    RenameRule(r"rpn\.head\.cls_logits\.", "rpn.head.objectness."),
    RenameRule(r"rpn\.head\.bbox_pred\.", "rpn.head.box_deltas."),
    RenameRule(r"roi_heads\.box_head\.fc6\.", "roi_heads.box_head.fcs.0."),
    RenameRule(r"roi_heads\.box_head\.fc7\.", "roi_heads.box_head.fcs.1."),
    RenameRule(r"roi_heads\.box_predictor\.", "roi_heads.box_predictor."),
    # Mask R-CNN: mask_head.i.0 now, mask_fcn1..4 in older files (the COCO checkpoint)
    RenameRule(r"roi_heads\.mask_head\.(\d+)\.0\.", r"roi_heads.mask_head.convs.\1."),
    RenameRule(r"roi_heads\.mask_head\.mask_fcn([1-4])\.", lambda m: f"roi_heads.mask_head.convs.{int(m[1]) - 1}."),
    RenameRule(r"roi_heads\.mask_predictor\.conv5_mask\.", "roi_heads.mask_head.deconv."),
    RenameRule(r"roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_heads.mask_head.logits."),
    # RetinaNet: conv.i.0 now, conv.0/2/4/6 with ReLUs in between in older files
    RenameRule(r"backbone\.fpn\.extra_blocks\.p6\.", "neck.p6_conv."),
    RenameRule(r"backbone\.fpn\.extra_blocks\.p7\.", "neck.p7_conv."),
    RenameRule(r"head\.classification_head\.conv\.(\d+)\.0\.", r"head.cls_subnet.convs.\1."),
    RenameRule(r"head\.regression_head\.conv\.(\d+)\.0\.", r"head.box_subnet.convs.\1."),
    RenameRule(r"head\.classification_head\.conv\.([0246])\.", lambda m: f"head.cls_subnet.convs.{int(m[1]) // 2}."),
    RenameRule(r"head\.regression_head\.conv\.([0246])\.", lambda m: f"head.box_subnet.convs.{int(m[1]) // 2}."),
    RenameRule(r"head\.classification_head\.cls_logits\.", "head.cls_subnet.pred."),
    RenameRule(r"head\.regression_head\.bbox_reg\.", "head.box_subnet.pred."),
)

# FCOS: its towers are Sequential (conv, GroupNorm, ReLU) x 4, so conv.0 / 3 / 6 / 9 are the convs
# and conv.1 / 4 / 7 / 10 the GroupNorms (one set for every level: our norms.0). RetinaNet's older
# layout also has conv.0 and conv.6, so these rules are used, first, for FCOS files only.
_TOWER = {"classification": "cls_tower", "regression": "box_tower"}
FCOS_RULES = (
    RenameRule(r"head\.(classification|regression)_head\.conv\.(\d+)\.",
               lambda m: f"head.{_TOWER[m[1]]}." + (f"convs.{int(m[2]) // 3}." if int(m[2]) % 3 == 0
                                                    else f"norms.0.{int(m[2]) // 3}.")),
    RenameRule(r"head\.classification_head\.cls_logits\.", "head.cls_pred."),
    RenameRule(r"head\.regression_head\.bbox_reg\.", "head.box_pred."),
    RenameRule(r"head\.regression_head\.bbox_ctrness\.", "head.centerness."),
)


def is_torchvision_fcos(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith("head.regression_head.bbox_ctrness.") for k in state_dict)


def is_torchvision_detection(state_dict: dict[str, Tensor]) -> bool:
    # torchvision's detectors are ResNet-FPN: body and fpn (our TridentNet has a backbone.body too)
    return any(k.startswith("backbone.body.") for k in state_dict) and any(k.startswith("backbone.fpn.")
                                                                          for k in state_dict)


def convert_torchvision(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Returns (our state_dict, names that were skipped)."""
    out, skipped = {}, []
    rules = FCOS_RULES + TORCHVISION_RULES if is_torchvision_fcos(state_dict) else TORCHVISION_RULES
    for name, value in state_dict.items():
        renamed = None if name.endswith("num_batches_tracked") else rename(name, rules)
        if renamed is None:
            skipped.append(name)
        else:
            out[renamed[0]] = value
    return out, skipped
