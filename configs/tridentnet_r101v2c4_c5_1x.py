"""TridentNet R101v2-C4 C5-128ROI, 1x, one image per GPU.

SimpleDet zoo: 40.6 box AP, 6.6G, 9 img/s on 8x 1080Ti at 1 image per GPU (SimpleDet's figures)."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r50v2c4_c5_1x.py")
config.model.backbone.depth = 101
config.train.batch_size = 1
