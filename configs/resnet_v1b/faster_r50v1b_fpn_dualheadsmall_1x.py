"""Faster R-CNN, ResNet-50 v1b (GluonCV) + FPN, dual box head (FPNBboxDualHeadSmall), 1x schedule.

SimpleDet publishes no figures for this config. SimpleDet's
config/resnet_v1b/faster_r50v1b_fpn_dualheadsmall_1x.py is its faster_r50v1b_fpn_1x with the box
head replaced: classification through 2 fcs of 1024, regression through 4 convs of 256 (3x3, no
bias) on the 7x7 RoI feature; same schedule (90k iterations of 16 images, lr 0.02, steps at 60k
and 80k, 500 warmup iterations), so this config is ours with the same change.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.dual_head import DualHeadConfig, DualHeadRoIHeadsConfig

config = load_config(Path(__file__).parent / "faster_r50v1b_fpn_1x.py")
config.model.roi_heads = DualHeadRoIHeadsConfig.from_roi_heads(
    config.model.roi_heads, DualHeadConfig(fc_dim=1024, num_convs=4, conv_dim=256))
