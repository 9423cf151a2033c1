"""Faster R-CNN, EfficientNet-B5 + FPN, BatchNorm everywhere, trained from scratch at 400x600, 6x.

SimpleDet zoo (models/efficientnet): 37.2 box AP on COCO minival, 36 epochs (6x), 8 GPUs x 8 images,
fp16, 75 img/s on 8x 1080Ti. Settings are SimpleDet's config/efficientnet/efficientnet_b5_fpn_bn_scratch_400_6x.py:
SimpleDet's EfficientNet-B5 (ReLU6, see simpledet/modeling/backbones/efficientnet.py) with trainable
per-GPU BN, an FPN and a 2fc box head each with BN after every layer, nothing pretrained (He-normal
initialisation); images resized to 400 / 600 and padded to one canvas, ImageNet mean/std on 0-255 RGB;
anchors 4 x stride (16..256 px); SGD lr 0.08 for 64 images, warmup from 0 over 500 iterations.
The schedule follows "Rethinking ImageNet Pre-training": 36 epochs of the flipped train set
(2 x 118287 images) in iterations of 64 images, the rate divided by 10 at 60k and 20k iterations of
16 images (15k and 5k of 64) before the end.
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.efficientnet import EfficientNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.box_head_bn import NormMLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

# SimpleDet's schedule arithmetic, in iterations of 64 images (8 GPUs x 8)
TRAIN_IMAGES = 82783 + 35504  # COCO train2017
EPOCHS = 36
ITERS_16 = TRAIN_IMAGES * 2 // 16 * EPOCHS  # iterations of 16 images over the flipped set

config = Config(
    model=FasterRCNNConfig(
        num_classes=80,
        input=InputConfig(min_size=(400,), max_size=600, pixel_scale=255.0, mean=IMAGENET_MEAN_255,
                          std=IMAGENET_STD_255, fixed_canvas=True),
        backbone=EfficientNetConfig(norm="bn"),
        neck=NormFPNConfig(out_channels=256, extra_p6=True, norm="bn"),
        rpn=RPNConfig(anchor_sizes=((16,), (32,), (64,), (128,), (256,)), aspect_ratios=(0.5, 1.0, 2.0),
                      fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5,
                      pre_nms_top_n_train=2000, pre_nms_top_n_test=1000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7, allowed_border=0.0),
        roi_heads=RoIHeadsConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=7,
                                 box_head=NormMLPHeadConfig(fc_dim=1024, num_fc=2, norm="bn"),
                                 batch_size_per_image=512, positive_fraction=0.25, fg_iou=0.5, bg_iou=0.5,
                                 box_weights=(10.0, 10.0, 5.0, 5.0), class_agnostic=False,
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=coco2017(num_workers=8, flip=True),
    train=TrainConfig(max_iter=ITERS_16 * 16 // 64, batch_size=8, lr=0.08, lr_reference_batch=64, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=500, warmup_factor=0.0,
                      steps=((ITERS_16 - 60000) * 16 // 64, (ITERS_16 - 20000) * 16 // 64),
                      amp=True, checkpoint_every=5000),
)
