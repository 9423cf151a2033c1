"""Faster R101v1-C4 C5-512ROI, 2x schedule."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r101v1c4_c5_512roi_1x.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
