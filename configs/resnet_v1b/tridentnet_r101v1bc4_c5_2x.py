"""TridentNet R101v1b-C4 C5-128ROI, 2x. SimpleDet zoo: 43.0 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r50v1bc4_c5_2x.py")
config.model.backbone.depth = 101
