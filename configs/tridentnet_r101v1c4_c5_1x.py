"""TridentNet R101v1-C4 C5-128ROI, 1x, one image per GPU (SimpleDet's
config/tridentnet_r101v1c4_c5_1x.py). SimpleDet publishes no figure for it."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r50v1c4_c5_1x.py")
config.model.backbone.depth = 101
config.train.batch_size = 1
