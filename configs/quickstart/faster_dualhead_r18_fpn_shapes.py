"""Faster R-CNN with the dual box head on the quick-start pieces: the slim R18-FPN, classification
through 2 fcs of 256, regression through 2 convs of 32."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.dual_head import DualHeadConfig, DualHeadRoIHeadsConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
config.model.roi_heads = DualHeadRoIHeadsConfig.from_roi_heads(
    config.model.roi_heads, DualHeadConfig(fc_dim=256, num_convs=2, conv_dim=32))
