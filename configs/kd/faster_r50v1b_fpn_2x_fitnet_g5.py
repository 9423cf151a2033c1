"""Faster R50v1b-FPN distilled from the R152v1b-FPN 2x teacher, 2x schedule. SimpleDet zoo: 40.5 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1b_fpn_1x_fitnet_g5.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
