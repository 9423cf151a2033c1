"""TridentFast R152v1b-C4 C5-128ROI, 2x. SimpleDet zoo: 43.9 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r152v1bc4_c5_2x.py")
# TridentFast: trained like TridentNet on all branches without scale-aware ranges, tested with
# the middle branch (dilation 2) alone
config.model.trident.valid_ranges = ((0.0, -1.0), (0.0, -1.0), (0.0, -1.0))
config.model.trident.train_scale_aware = False
config.model.trident.test_scale_aware = False
config.model.trident.test_branches = (1,)
