"""Mask Scoring R-CNN, ResNet-50 v1b (GluonCV) + FPN, 2MLP box head + 4conv mask head + MaskIoU
head, 1x schedule.

SimpleDet publishes no figures for this config (models/msrcnn/README.md lists the R50v1 one).
SimpleDet's config/resnet_v1b/ms_r50v1b_fpn_1x.py is its mask_r50v1b_fpn_1x plus the MaskIoU head
(4 convs of 256, the last with stride 2, 2 fcs of 1024), same schedule (90k iterations of 16
images, lr 0.02, steps at 60k and 80k, 500 warmup iterations); so is this one.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.mask_scoring_rcnn import MaskScoringRCNNConfig
from simpledet.modeling.heads.maskiou_head import MaskIoUHeadConfig

config = load_config(Path(__file__).parent / "mask_r50v1b_fpn_1x.py")
config.model = MaskScoringRCNNConfig.from_mask(config.model, MaskIoUHeadConfig(num_convs=4, conv_dim=256, fc_dim=1024))
