"""RepPoints, ResNet-101 v1b-DCNv2 + GroupNorm FPN P3-P7, moment transform, 2x, multi-scale
training and testing.

SimpleDet zoo: 47.0 box AP on COCO minival (SimpleDet's own figure). As the DCN config, with every
block of conv3_x and conv4_x deformable (SimpleDet's "DCNv2" placement: num_c3_block = 4,
num_c4_block = 23), still without modulation (config/RepPoints/reppoints_moment_dcnv2_r101v1b_fpn_multiscale_2x.py).
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "reppoints_moment_dcn_r101v1b_fpn_multiscale_2x.py")
config.model.backbone.dcn_blocks = (0, 4, 23, 0)
