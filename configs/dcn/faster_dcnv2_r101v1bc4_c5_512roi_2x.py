"""Faster R101v1b-C4-DCNv2 C5-512ROI, 2x. SimpleDet zoo: 42.7 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_dcnv2_r101v1bc4_c5_512roi_1x.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
