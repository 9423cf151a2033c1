"""TridentNet, ResNet-50 v1b C4, SyncBN, trained from scratch with multi-scale training, 2x.

SimpleDet's config/scratch/tridentnet_r50v1bc4_c5_syncbn_scratch_multiscale_2x.py (its zoo publishes
no AP for it): the SyncBN scratch TridentNet whose training images are resized to a shorter side
drawn from 640, 672, ..., 800 (longer side at most 1200; SimpleDet's RandResize2DImageBbox), here
one draw per batch (InputConfig.min_size); testing at 800 / 2000 as before.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "tridentnet_r50v1bc4_c5_syncbn_scratch_2x.py")
config.model.input.min_size = (640, 672, 704, 736, 768, 800)
config.model.input.test_min_size = 800
