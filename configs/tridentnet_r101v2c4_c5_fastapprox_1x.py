"""Trident-Fast R101v2-C4 C5-128ROI, 1x: trained on three branches without scale-aware ranges,
tested with the middle branch (dilation 2) alone.

SimpleDet zoo: 39.9 box AP, 6.6G, 9 img/s on 8x 1080Ti at 1 image per GPU (SimpleDet's figures)."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r101v2c4_c5_1x.py")
config.model.trident.valid_ranges = ((0.0, -1.0), (0.0, -1.0), (0.0, -1.0))
config.model.trident.train_scale_aware = False
config.model.trident.test_scale_aware = False
config.model.trident.test_branches = (1,)
