"""TridentNet, ResNet-50 v1b C4, C5-128ROI head, 1x. SimpleDet zoo: 38.4 box AP.

Settings from SimpleDet's config/resnet_v1b/tridentnet_r50v1bc4_c5_1x.py: three branches with
dilations 1 / 2 / 3 over every block of conv4_x but the first, weights and norms shared;
scale-aware training and testing with valid ranges (0, 90), (30, 160), (90, inf) pixels on the
original image; RPN on C4 with 15 anchors (scales 2-32 x 16 px) and 500 / 300 proposals per
branch; 128 RoIs per branch and image, half foreground; class-agnostic boxes; gradients clipped
at 5; warmup from 0 over 3000 iterations.
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.tridentnet import TridentConfig, TridentNetConfig
from simpledet.modeling.heads.res5_head import Res5HeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

config = Config(
    model=TridentNetConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1200, test_max_size=2000, pixel_scale=255.0,
                          mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255),
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2, out_features=("c4",)),
        trident=TridentConfig(dilations=(1, 2, 3), num_trident_blocks=None,
                              valid_ranges=((0.0, 90.0), (30.0, 160.0), (90.0, -1.0)),
                              train_scale_aware=True, test_scale_aware=True, test_branches=(0, 1, 2)),
        rpn=RPNConfig(in_features=("c4",), anchor_sizes=((32, 64, 128, 256, 512),), aspect_ratios=(0.5, 1.0, 2.0),
                      conv_channels=512, pre_nms_top_n_train=12000, pre_nms_top_n_test=6000,
                      post_nms_top_n_train=500, post_nms_top_n_test=300, nms_thresh=0.7, allowed_border=0.0),
        roi_heads=RoIHeadsConfig(in_features=("c4",), pooler_resolution=7,
                                 box_head=Res5HeadConfig(variant="v1b", stride=1), class_agnostic=True,
                                 batch_size_per_image=128, positive_fraction=0.5, fg_iou=0.5, bg_iou=0.5,
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True),
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.02, lr_reference_batch=16, warmup_iters=3000,
                      warmup_factor=0.0, steps=(60000, 80000), clip_grad_norm=5.0, checkpoint_every=5000),
)
