"""Faster R-CNN, ResNet-50 v1b (GluonCV) + FPN, 2MLP head, 1x schedule.

SimpleDet zoo: 37.2 box AP on COCO minival (8 GPUs x 2 images). Settings are SimpleDet's
(config/resnet_v1b/faster_r50v1b_fpn_1x.py); the pretrained backbone is GluonCV's
resnet50_v1b (`model.backbone.pretrained=PATH`), which expects ImageNet mean/std on 0-255 RGB.
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

config = Config(
    model=FasterRCNNConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1333, pixel_scale=255.0, mean=IMAGENET_MEAN_255,
                          std=IMAGENET_STD_255),
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2),
        neck=FPNConfig(out_channels=256, extra_p6=True),
        rpn=RPNConfig(anchor_sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=(0.5, 1.0, 2.0),
                      fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5,
                      pre_nms_top_n_train=2000, pre_nms_top_n_test=1000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7, allowed_border=0.0),
        roi_heads=RoIHeadsConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=7,
                                 box_head=MLPHeadConfig(fc_dim=1024, num_fc=2, fc_bias=False),
                                 batch_size_per_image=512, positive_fraction=0.25, fg_iou=0.5, bg_iou=0.5,
                                 box_weights=(10.0, 10.0, 5.0, 5.0), class_agnostic=False,
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True),
    # 1x: 90k iterations of 16 images; lr 0.02 for 16 images, scaled linearly to the real batch
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.02, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=500, warmup_factor=1.0 / 3, steps=(60000, 80000),
                      checkpoint_every=5000),
)
