"""Faster R-CNN, ResNet-50 v1b (GluonCV) C4, C5-512ROI head, 1x. SimpleDet zoo: 35.7 box AP.

Settings from SimpleDet's config/resnet_v1b/faster_r50v1bc4_c5_512roi_1x.py: the RPN reads C4
(stride 16) with 15 anchors per position (scales 2-32 x 16 px, three ratios) through a 512-channel
conv; RoIs are pooled 7x7 from C4 and run through stage 5 with stride 1 and global average
pooling; class-agnostic boxes; short side 800, long side 1200 (2000 at test); gradients clipped
at 35. The backbone takes GluonCV's ImageNet mean/std on 0-255 RGB.
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.res5_head import Res5HeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

config = Config(
    model=FasterRCNNConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1200, test_max_size=2000, pixel_scale=255.0,
                          mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255),
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2, out_features=("c4",)),
        neck=None,
        rpn=RPNConfig(in_features=("c4",), anchor_sizes=((32, 64, 128, 256, 512),), aspect_ratios=(0.5, 1.0, 2.0),
                      conv_channels=512, fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5,
                      pre_nms_top_n_train=12000, pre_nms_top_n_test=6000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7, allowed_border=0.0),
        roi_heads=RoIHeadsConfig(in_features=("c4",), pooler_resolution=7,
                                 box_head=Res5HeadConfig(variant="v1b", stride=1),
                                 class_agnostic=True, batch_size_per_image=512, positive_fraction=0.25,
                                 fg_iou=0.5, bg_iou=0.5, box_weights=(10.0, 10.0, 5.0, 5.0),
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True),
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.02, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=750, warmup_factor=0.0, steps=(60000, 80000),
                      clip_grad_norm=35.0, checkpoint_every=5000),
)
