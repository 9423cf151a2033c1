"""Mask R-CNN, ResNet-50 v1b (GluonCV) + FPN, 2MLP box head + 4conv mask head, 1x schedule.

SimpleDet zoo: 37.8 box AP / 34.4 mask AP on COCO minival. SimpleDet's
config/resnet_v1b/mask_r50v1b_fpn_1x.py is its faster_r50v1b_fpn_1x.py plus the mask branch
(MaskParam: resolution 28, dim_reduced 256; MaskRoiParam: RoIAlign 14x14 on strides 4-32), so
this config is ours plus the same branch.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.mask_rcnn import MaskRCNNConfig
from simpledet.modeling.heads.mask_head import MaskHeadConfig

config = load_config(Path(__file__).parent / "faster_r50v1b_fpn_1x.py")
config.model = MaskRCNNConfig.from_faster(
    config.model, MaskHeadConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=14,
                                 pooler_sampling_ratio=2, num_convs=4, conv_dim=256))
