"""Mask R-CNN, ResNet-50 v1b + FPN, GroupNorm everywhere, trained from scratch, 2x.

SimpleDet's config/scratch/mask_r50v1b_fpn_gn_scratch_2x.py (its zoo publishes no AP for it): the
SyncBN scratch config with every norm a GroupNorm of 32 groups (per-channel scale and shift, eps
1e-5): backbone (stem included), FPN, 2fc box head and mask head; same schedule and rate.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "mask_r50v1b_fpn_bn_scratch_2x.py")
model = config.model
model.backbone.norm = model.neck.norm = model.roi_heads.box_head.norm = model.mask_head.norm = "gn"
