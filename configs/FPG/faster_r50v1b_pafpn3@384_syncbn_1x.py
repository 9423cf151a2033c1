"""Faster R-CNN, ResNet-50 v1b + PAFPN stacked 3 times (384 channels), 1x schedule.

SimpleDet zoo (models/FPG): 39.4 box AP on COCO val2017 (AP50 59.9, AP75 42.8; 8 GPUs x 2 images).
SimpleDet's config/FPG/faster_r50v1b_pafpn3@384_syncbn_1x.py: faster_r50v1b_pafpn3@256_syncbn_1x.py
with the neck 384 channels wide (the RPN's 3x3 conv still maps to 256). SimpleDet notes that this
is its NAS-FPN folder's TDBU neck.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1b_pafpn3@256_syncbn_1x.py")
config.model.neck.channels = 384
