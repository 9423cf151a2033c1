"""TridentNet R50v1-C4 C5-128ROI, 2x (SimpleDet's config/tridentnet_r50v1c4_c5_2x.py: 180k
iterations of 16 images, lr steps at 120k and 160k). SimpleDet publishes no figure for it."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r50v1c4_c5_1x.py")
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
