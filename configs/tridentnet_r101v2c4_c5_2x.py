"""TridentNet R101v2-C4 C5-128ROI, 2x, one image per GPU (SimpleDet's
config/tridentnet_r101v2c4_c5_2x.py). SimpleDet publishes no figure for it."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r101v2c4_c5_1x.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
