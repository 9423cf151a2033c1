"""Faster R-CNN, ResNet-50 v1 (MSRA) C4, C5-512ROI head, 1x.

SimpleDet zoo: 34.2 box AP, 5.9G training memory, 20 img/s on 8x 1080Ti (SimpleDet's figures).
Settings from SimpleDet's config/faster_r50v1c4_c5_512roi_1x.py: the RPN reads C4 (stride 16)
with 15 anchors per position (scales 2-32 x 16 px, three ratios) through a 512-channel conv; RoIs
are pooled 7x7 from C4 and run through stage 5 with stride 1 and global average pooling;
class-agnostic boxes; short side 800, long side 1200 (2000 at test); gradients clipped at 35.
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.res5_head import Res5HeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=FasterRCNNConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1200, test_max_size=2000, pixel_scale=255.0,
                          mean=(122.7717, 115.9465, 102.9801), std=(1.0, 1.0, 1.0)),
        backbone=ResNetConfig(depth=50, variant="v1", norm="frozen_bn", freeze_at=2, out_features=("c4",)),
        neck=None,
        rpn=RPNConfig(in_features=("c4",), anchor_sizes=((32, 64, 128, 256, 512),), aspect_ratios=(0.5, 1.0, 2.0),
                      conv_channels=512, fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5,
                      pre_nms_top_n_train=12000, pre_nms_top_n_test=6000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7, allowed_border=0.0),
        roi_heads=RoIHeadsConfig(in_features=("c4",), pooler_resolution=7,
                                 box_head=Res5HeadConfig(variant="v1", stride=1),
                                 class_agnostic=True, batch_size_per_image=512, positive_fraction=0.25,
                                 fg_iou=0.5, bg_iou=0.5, box_weights=(10.0, 10.0, 5.0, 5.0),
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=DataConfig(train=DatasetConfig("data/coco/annotations/instances_train2017.json", "data/coco/train2017"),
                    val=DatasetConfig("data/coco/annotations/instances_val2017.json", "data/coco/val2017"),
                    num_workers=4, flip=True),
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.02, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=750, warmup_factor=0.0, steps=(60000, 80000),
                      clip_grad_norm=35.0, checkpoint_every=5000),
)
