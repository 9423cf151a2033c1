"""Faster R-CNN C4 on the quick-start pieces: slim R18 up to C4, RPN on C4, RoIs through stage 5
(two basic blocks, stride 1) and global pooling; the C4 family in small."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.heads.res5_head import Res5HeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
config.model.backbone = ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                                     out_features=("c4",))
config.model.neck = None
config.model.rpn = RPNConfig(in_features=("c4",), anchor_sizes=((16, 32, 64),), conv_channels=128,
                             batch_size_per_image=128, pre_nms_top_n_train=300, pre_nms_top_n_test=150,
                             post_nms_top_n_train=100, post_nms_top_n_test=50, allowed_border=None)
config.model.roi_heads = RoIHeadsConfig(in_features=("c4",), pooler_resolution=7,
                                        box_head=Res5HeadConfig(block="basic", num_blocks=2, width=256, norm="bn"),
                                        class_agnostic=True, batch_size_per_image=32)
