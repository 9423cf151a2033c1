"""Faster R-CNN R50v1b-C4-DCNv1, C5-512ROI, 1x. SimpleDet zoo: 38.8 box AP.

SimpleDet's config/dcn/faster_dcn_r50v1bc4_c5_512roi_1x.py: the 3x3 conv of the last 3 blocks of
conv4_x (our layer3) is deformable, 4 deformable groups, offsets (72 channels) from a plain 3x3
conv initialised to zero; the C5 head stays plain."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "../resnet_v1b/faster_r50v1bc4_c5_512roi_1x.py")
config.model.backbone.dcn_blocks = (0, 0, 3, 0)
config.model.backbone.dcn_deformable_groups = 4
