"""Cascade R-CNN, ResNet-50 v1 (MSRA) + FPN, 2MLP heads, 1x.

SimpleDet zoo: 40.3 box AP, 6.6G training memory, 21 img/s on 8x 1080Ti (SimpleDet's figures).
Settings from SimpleDet's config/cascade_r50v1_fpn_1x.py: stages at IoU 0.5 / 0.6 / 0.7, box std
(0.1, 0.1, 0.2, 0.2) / (0.05, 0.05, 0.1, 0.1) / (0.033, 0.033, 0.067, 0.067) (the inverses are our
box weights), loss weights 1 / 0.5 / 0.25, class-agnostic boxes, 512 RoIs per image in every stage.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.cascade_roi_heads import CascadeRoIHeadsConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig

config = load_config(Path(__file__).parent / "faster_r50v1_fpn_1x.py")
config.model.roi_heads = CascadeRoIHeadsConfig(
    stage=RoIHeadsConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=7,
                         # SimpleDet's cascade fcs have biases (its plain 2MLP head has none)
                         box_head=MLPHeadConfig(fc_dim=1024, num_fc=2, fc_bias=True),
                         class_agnostic=True, batch_size_per_image=512, positive_fraction=0.25,
                         score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    fg_ious=(0.5, 0.6, 0.7),
    box_weights=((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (1 / 0.033, 1 / 0.033, 1 / 0.067, 1 / 0.067)),
    loss_weights=(1.0, 0.5, 0.25))
