"""Mask Scoring R-CNN on the quick-start pieces: the slim R18-FPN Mask R-CNN (a mask branch of 2
convs of 32) with a light MaskIoU head (4 convs of 32, 2 fcs of 128)."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.mask_scoring_rcnn import MaskScoringRCNNConfig
from simpledet.modeling.heads.maskiou_head import MaskIoUHeadConfig

config = load_config(Path(__file__).parent / "mask_r18_fpn_shapes.py")
config.model = MaskScoringRCNNConfig.from_mask(config.model, MaskIoUHeadConfig(num_convs=4, conv_dim=32, fc_dim=128))
