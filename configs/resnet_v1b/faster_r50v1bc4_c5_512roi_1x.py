"""Faster R-CNN R50v1b-C4, C5-512ROI head, 1x. SimpleDet zoo: 35.7 box AP.

As the v1 C4 config, with GluonCV's v1b backbone (stride in the 3x3 conv; stage 5 too) and its
ImageNet mean/std on 0-255 RGB."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "../faster_r50v1c4_c5_512roi_1x.py")
config.model.backbone.variant = "v1b"
config.model.roi_heads.box_head.variant = "v1b"
config.model.input.mean = (123.675, 116.28, 103.53)
config.model.input.std = (58.395, 57.12, 57.375)
