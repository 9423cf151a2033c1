"""Faster R101v2-C4 C5-256ROI with synchronised BatchNorm, 1x.

SimpleDet zoo: 38.6 box AP, 7.8G, 17 img/s on 8x 1080Ti. BatchNorm is trained and synchronised
across all processes (SimpleDet synchronised within one node): launch with torchrun."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r101v2c4_c5_256roi_1x.py")
config.model.backbone.norm = "syncbn"
config.model.roi_heads.box_head.norm = "syncbn"
