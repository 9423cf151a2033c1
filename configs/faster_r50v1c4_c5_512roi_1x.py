"""Faster R-CNN, ResNet-50 v1 (MSRA) C4, C5-512ROI head, 1x.

SimpleDet zoo: 34.2 box AP, 5.9G training memory, 20 img/s on 8x 1080Ti (SimpleDet's figures).
SimpleDet's config/faster_r50v1c4_c5_512roi_1x.py: the v1b config's settings with the MSRA
backbone (stride in the 1x1 conv, stage 5 too), which takes 0-255 RGB minus the pixel mean, std 1.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.preprocess import MSRA_MEAN_255, UNIT_STD

config = load_config(Path(__file__).parent / "resnet_v1b/faster_r50v1bc4_c5_512roi_1x.py")
config.model.backbone.variant = "v1"
config.model.roi_heads.box_head.variant = "v1"
config.model.input.mean = MSRA_MEAN_255
config.model.input.std = UNIT_STD
