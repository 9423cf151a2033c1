"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

Mask Scoring R-CNN (models/msrcnn, MaskIoUConvHead): `iou_head_conv_{i}` -> the MaskIoU head's
convs.{i}, `iou_head_FC1` / `iou_head_FC2` -> fcs.0 / fcs.1 (plain fully connected layers, as
ours), `iou_head_pred` -> pred (num_classes + 1 outputs, background first, as ours). The box and
mask branches are Mask R-CNN's, which the core rules place.
"""

from simpledet.weights.rename import RenameRule

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"iou_head_conv_(\d+)$", r"roi_heads.maskiou_head.convs.\1"),
    RenameRule(r"iou_head_FC([12])$", lambda m: f"roi_heads.maskiou_head.fcs.{int(m[1]) - 1}"),
    RenameRule(r"iou_head_pred$", "roi_heads.maskiou_head.pred"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
