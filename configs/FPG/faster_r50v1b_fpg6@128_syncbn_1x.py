"""Faster R-CNN, ResNet-50 v1b + Feature Pyramid Grids (6 pathways of 128 channels), 1x schedule.

SimpleDet zoo (models/FPG): 38.7 box AP on COCO val2017 (AP50 59.5, AP75 42.3; 8 GPUs x 2 images).
Settings are SimpleDet's config/FPG/faster_r50v1b_fpg6@128_syncbn_1x.py: the grid's BN is SyncBN
(trained, scale and shift included: launch with torchrun), the backbone's BN frozen; the RPN's 3x3
conv maps the grid's 128 channels to 256; 2MLP head (1024, no bias) on P2-P5, RPN on P2-P6;
lr 0.02 for 16 images, 90k iterations, steps at 60k and 80k, 500 warmup iterations at 1/3;
images 800 / 1333 with flips. The rest is configs/resnet_v1b/faster_r50v1b_fpn_1x.py.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.necks.fpg import FPGConfig

config = load_config(Path(__file__).parent / "../resnet_v1b/faster_r50v1b_fpn_1x.py")
config.model.neck = FPGConfig(channels=128, num_stages=6, lateral_kernel=1, norm="syncbn")
config.model.rpn.conv_channels = 256
