"""Faster R152v1b-C4 C5-512ROI, 2x. SimpleDet zoo: 41.8 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1bc4_c5_512roi_2x.py")
config.model.backbone.depth = 152
