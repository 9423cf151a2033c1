"""Mask R-CNN, ResNet-50 v1b + FPN, SyncBN everywhere, trained from scratch, 2x.

SimpleDet's config/scratch/mask_r50v1b_fpn_bn_scratch_2x.py; its zoo publishes no AP for it. Nothing
pretrained: every norm is a trainable BN synchronised across GPUs, in the backbone (stem included,
nothing frozen), after each FPN lateral and output conv (convs with bias, then the norm), after each
fc of the 2fc box head (fc without bias -> norm -> ReLU) and after each of the mask head's four 3x3
convs. Images resized to 800 / 1333, ImageNet mean/std on 0-255 RGB, flipped. SGD at 0.04 for 16
images (8 GPUs x 2; twice the pretrained configs' rate), warmup over 500 iterations from 1/6 of it,
12 epochs of the flipped train set (2 x 118287 images, ~177k iterations of 16 images), the rate
divided by 10 at 120k and 160k iterations.
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.mask_rcnn import MaskRCNNConfig
from simpledet.modeling.heads.box_head_bn import NormMLPHeadConfig
from simpledet.modeling.heads.mask_head import MaskHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

NORM = "syncbn"
ITERS_16 = 118287 * 2 // 16 * 12  # 12 epochs of the flipped train set, in iterations of 16 images

config = Config(
    model=MaskRCNNConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1333, pixel_scale=255.0, mean=IMAGENET_MEAN_255,
                          std=IMAGENET_STD_255),
        backbone=ResNetConfig(depth=50, variant="v1b", norm=NORM, freeze_at=0, pretrained=None),
        neck=NormFPNConfig(out_channels=256, extra_p6=True, norm=NORM),
        rpn=RPNConfig(anchor_sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=(0.5, 1.0, 2.0),
                      fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5,
                      pre_nms_top_n_train=2000, pre_nms_top_n_test=1000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7, allowed_border=0.0),
        roi_heads=RoIHeadsConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=7,
                                 box_head=NormMLPHeadConfig(fc_dim=1024, num_fc=2, norm=NORM),
                                 batch_size_per_image=512, positive_fraction=0.25, fg_iou=0.5, bg_iou=0.5,
                                 box_weights=(10.0, 10.0, 5.0, 5.0), class_agnostic=False,
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
        mask_head=MaskHeadConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=14, pooler_sampling_ratio=2,
                                 num_convs=4, conv_dim=256, norm=NORM),
    ),
    data=coco2017(num_workers=4, flip=True),
    train=TrainConfig(max_iter=ITERS_16, batch_size=2, lr=0.04, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=500, warmup_factor=1.0 / 6, steps=(120000, 160000),
                      checkpoint_every=5000),
)
