"""Faster R-CNN R50v1-FPN 2MLP, 2x schedule."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1_fpn_1x.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
