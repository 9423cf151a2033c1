"""Cascade R-CNN on the quick-start pieces: the same slim R18-FPN, three cascade stages."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.cascade_roi_heads import CascadeRoIHeadsConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
config.model.roi_heads = CascadeRoIHeadsConfig(stage=RoIHeadsConfig(box_head=MLPHeadConfig(fc_dim=256, fc_bias=True),
                                                                    class_agnostic=True, batch_size_per_image=64))
