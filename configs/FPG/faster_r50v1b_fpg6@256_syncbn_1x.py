"""Faster R-CNN, ResNet-50 v1b + Feature Pyramid Grids (6 pathways of 256 channels), 1x schedule.

SimpleDet has this config (config/FPG/faster_r50v1b_fpg6@256_syncbn_1x.py) but publishes no figure
for it. It is faster_r50v1b_fpg6@128_syncbn_1x.py with the grid 256 channels wide.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1b_fpg6@128_syncbn_1x.py")
config.model.neck.channels = 256
