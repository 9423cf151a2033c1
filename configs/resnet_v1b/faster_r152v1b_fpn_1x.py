"""Faster R-CNN R152v1b-FPN 2MLP, 1x schedule. SimpleDet zoo: 41.5 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1b_fpn_1x.py")
config.model.backbone.depth = 152
