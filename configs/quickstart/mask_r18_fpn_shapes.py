"""Mask R-CNN on the quick-start pieces: the slim R18-FPN with a light mask branch (2 convs of 32)."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.mask_rcnn import MaskRCNNConfig
from simpledet.modeling.heads.mask_head import MaskHeadConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
config.model = MaskRCNNConfig.from_faster(config.model, MaskHeadConfig(num_convs=2, conv_dim=32))
