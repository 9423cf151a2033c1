"""Faster R101v1b-C4-DCNv2 C5-512ROI, 1x. SimpleDet zoo: 41.7 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_dcnv2_r50v1bc4_c5_512roi_1x.py")
config.model.backbone.depth = 101
config.model.backbone.dcn_blocks = (0, 4, 23, 0)
