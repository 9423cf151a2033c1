"""torchvision detection checkpoints (state_dicts) -> our parameter names.

Covers fasterrcnn_resnet50_fpn (v1) and any torchvision ResNet-FPN Faster R-CNN. Names map one to
one; BatchNorm's `num_batches_tracked` counters have no counterpart in a frozen BN and are dropped.
"""

import re

from torch import Tensor

# (torchvision pattern, our replacement), first match wins
_RULES = [
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"neck.lateral_convs.\1."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.", r"neck.lateral_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"neck.output_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.", r"neck.output_convs.\1."),
    (r"^rpn\.head\.conv\.0\.0\.", "rpn.head.conv."),
    (r"^rpn\.head\.conv\.", "rpn.head.conv."),
    (r"^rpn\.head\.cls_logits\.", "rpn.head.objectness."),
    (r"^rpn\.head\.bbox_pred\.", "rpn.head.box_deltas."),
    (r"^roi_heads\.box_head\.fc6\.", "roi_heads.box_head.fcs.0."),
    (r"^roi_heads\.box_head\.fc7\.", "roi_heads.box_head.fcs.1."),
    (r"^roi_heads\.box_predictor\.", "roi_heads.box_predictor."),
]


def is_torchvision_detection(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith("backbone.body.") for k in state_dict)


def rename_rules() -> list[tuple[str, str]]:
    """All families' rules: each family that has a torchvision counterpart adds its own list."""
    from simpledet.weights import torchvision_families

    return _RULES + torchvision_families.RULES


def convert_torchvision(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Returns (our state_dict, names that were skipped)."""
    rules = rename_rules()
    out, skipped = {}, []
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            skipped.append(name)
            continue
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, name)
            if n:
                out[new] = value
                break
        else:
            skipped.append(name)
    return out, skipped
