"""Faster R101v1b-C4-DCNv1 C5-512ROI, 1x. SimpleDet zoo: 41.4 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_dcn_r50v1bc4_c5_512roi_1x.py")
config.model.backbone.depth = 101
