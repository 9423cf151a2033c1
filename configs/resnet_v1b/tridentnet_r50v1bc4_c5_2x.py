"""TridentNet R50v1b-C4 C5-128ROI, 2x. SimpleDet zoo: 39.6 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r50v1bc4_c5_1x.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
