"""Renaming rules for torchvision detection families beyond Faster R-CNN (Mask R-CNN heads,
RetinaNet heads): (torchvision regex, our replacement) pairs, tried after the Faster R-CNN rules."""

MASK_RULES: list[tuple[str, str]] = []
RETINA_RULES: list[tuple[str, str]] = []

RULES = MASK_RULES + RETINA_RULES
