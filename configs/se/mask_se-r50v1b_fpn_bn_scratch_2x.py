"""Mask R-CNN, SE-ResNet-50 v1b + FPN, SyncBN everywhere, trained from scratch, 2x.

SimpleDet's config/se/mask_se-r50v1b_fpn_bn_scratch_2x.py (its zoo publishes no AP for it): the SyncBN
scratch Mask R-CNN (config/scratch/mask_r50v1b_fpn_bn_scratch_2x.py, same schedule and rate) with
SimpleDet's SEv2ResNetV1bFPN backbone (a squeeze-excitation after every bottleneck's 3x3 conv,
reduction 4) and MaskRcnnSe4convHead (a squeeze-excitation after each of the mask head's convs).
"""

import dataclasses
from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.backbones.se_resnet import SEResNetConfig

config = load_config(Path(__file__).parents[1] / "scratch" / "mask_r50v1b_fpn_bn_scratch_2x.py")
model = config.model
model.backbone = SEResNetConfig(**dataclasses.asdict(model.backbone), se_reduction=4)
model.mask_head.squeeze_excitation = True
