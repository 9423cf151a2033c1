"""Renaming rules for torchvision detection families beyond Faster R-CNN (Mask R-CNN heads,
RetinaNet heads): (torchvision regex, our replacement) pairs, tried after the Faster R-CNN rules."""

MASK_RULES: list[tuple[str, str]] = [
    # current layout: mask_head.i.0 (Conv2dNormActivation) ...
    (r"^roi_heads\.mask_head\.(\d+)\.0\.", r"roi_heads.mask_head.convs.\1."),
    # ... and that of older files (the COCO checkpoint): mask_fcn1..4
    *[(rf"^roi_heads\.mask_head\.mask_fcn{i + 1}\.", f"roi_heads.mask_head.convs.{i}.") for i in range(4)],
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "roi_heads.mask_head.deconv."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_heads.mask_head.logits."),
]
RETINA_RULES: list[tuple[str, str]] = [
    (r"^backbone\.fpn\.extra_blocks\.p6\.", "neck.p6_conv."),
    (r"^backbone\.fpn\.extra_blocks\.p7\.", "neck.p7_conv."),
    # current layout: conv.i.0 (Conv2dNormActivation) ...
    (r"^head\.classification_head\.conv\.(\d+)\.0\.", r"head.cls_subnet.convs.\1."),
    (r"^head\.regression_head\.conv\.(\d+)\.0\.", r"head.box_subnet.convs.\1."),
    # ... and the layout of older checkpoint files: conv.0/2/4/6 with ReLUs in between
    *[(rf"^head\.classification_head\.conv\.{2 * i}\.", f"head.cls_subnet.convs.{i}.") for i in range(4)],
    *[(rf"^head\.regression_head\.conv\.{2 * i}\.", f"head.box_subnet.convs.{i}.") for i in range(4)],
    (r"^head\.classification_head\.cls_logits\.", "head.cls_subnet.pred."),
    (r"^head\.regression_head\.bbox_reg\.", "head.box_subnet.pred."),
]

RULES = MASK_RULES + RETINA_RULES
