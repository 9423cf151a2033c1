"""Faster R-CNN R50v1b-C4-DCNv2, C5-512ROI, 1x. SimpleDet zoo: 39.6 box AP.

SimpleDet's "DCNv2" rows: every block of conv3_x and conv4_x (our layer2 and layer3) deformable,
the DCNv2 paper's placement, without modulation (set model.backbone.dcn_modulated=True for the
modulated form)."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "../resnet_v1b/faster_r50v1bc4_c5_512roi_1x.py")
config.model.backbone.dcn_blocks = (0, 4, 6, 0)
config.model.backbone.dcn_deformable_groups = 4
config.model.backbone.dcn_modulated = False
