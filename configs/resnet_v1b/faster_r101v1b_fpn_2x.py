"""Faster R-CNN R101v1b-FPN 2MLP, 2x schedule. SimpleDet zoo: 40.4 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1b_fpn_2x.py")
config.model.backbone.depth = 101
