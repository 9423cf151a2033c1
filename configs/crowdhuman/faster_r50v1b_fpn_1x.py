"""Faster R-CNN, ResNet-50 v1b + FPN with BN, on CrowdHuman (full-body boxes, one class), 10 epochs.

SimpleDet zoo (models/crowdhuman): AP 84.77, MR^-2 46.72 on CrowdHuman val (8 GPUs x 2 images,
fp16). Settings are SimpleDet's (config/crowdhuman/faster_r50v1b_fpn_1x.py): images resized to
short side 800 / long side 1400; anchors 32-512 px with ratios 0.5, 1, 2 on P2-P6; proposals
3000 -> 2000 in training, 2000 -> 1000 at test; 512 RoIs per image, half of them foreground;
test score 0.05, NMS 0.5, 300 detections per image; lr 0.02 for 16 images, 500 warm-up iterations
from a third of it, 10 epochs of the flipped train set with steps at 14960 and 17765 iterations.
The FPN has a trainable BN after every convolution (SimpleDet's "localbn": per-GPU statistics).

Data: SimpleDet's layout, data/crowdhuman/images/ID.jpg and the .odgt files read directly
(simpledet/data/crowdhuman.py): ignore regions ('mask' boxes, extra.ignore) are COCO crowd boxes,
not objects to learn; the RPN does not take anchors they cover to 0.3 or more as background
(rpn.ignore_iof), and the evaluation ignores detections on them; `eval` reports CrowdHuman's AP and
MR^-2 (simpledet/engine/crowdhuman_metrics.py).
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.crowdhuman import CrowdHumanFasterRCNNConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

TRAIN_IMAGES = 15000  # CrowdHuman train; twice that with the flipped copies
ITERS_PER_EPOCH = TRAIN_IMAGES * 2 // 16

config = Config(
    model=CrowdHumanFasterRCNNConfig(
        num_classes=1,
        input=InputConfig(min_size=(800,), max_size=1400, pixel_scale=255.0, mean=IMAGENET_MEAN_255,
                          std=IMAGENET_STD_255),
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2),
        neck=NormFPNConfig(out_channels=256, extra_p6=True, norm="bn"),
        rpn=RPNConfig(anchor_sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=(0.5, 1.0, 2.0),
                      fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256, positive_fraction=0.5,
                      pre_nms_top_n_train=3000, pre_nms_top_n_test=2000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7, min_size=2.0,
                      allowed_border=1000.0, ignore_iof=0.3),
        roi_heads=RoIHeadsConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=7,
                                 box_head=MLPHeadConfig(fc_dim=1024, num_fc=2, fc_bias=False),
                                 batch_size_per_image=512, positive_fraction=0.5, fg_iou=0.5, bg_iou=0.5,
                                 box_weights=(10.0, 10.0, 5.0, 5.0), class_agnostic=False,
                                 score_thresh=0.05, nms_thresh=0.5, detections_per_img=300),
    ),
    data=DataConfig(
        train=DatasetConfig("data/crowdhuman/annotations/annotation_train.odgt", "data/crowdhuman/images",
                            format="crowdhuman"),
        val=DatasetConfig("data/crowdhuman/annotations/annotation_val.odgt", "data/crowdhuman/images",
                          format="crowdhuman"),
        num_workers=4, flip=True),
    train=TrainConfig(max_iter=10 * ITERS_PER_EPOCH, batch_size=2, lr=0.02, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=500, warmup_factor=1.0 / 3, steps=(14960, 17765),
                      checkpoint_every=ITERS_PER_EPOCH, amp=True),
)
