"""RepPoints, ResNet-50 v1 (MSRA) + GroupNorm FPN P3-P7, moment transform, 1x schedule.

SimpleDet zoo: 38.3 box AP on COCO minival (paper 38.3; 8 GPUs x 2 images). Settings are SimpleDet's
(config/RepPoints/reppoints_moment_r50v1_fpn_1x.py): frozen-BN backbone (stem and conv2_x fixed),
GroupNorm in the neck and head, 9 points, point assignment (scale 4, 1 point per object) for the
initial points and max-IoU 0.5 / 0.5 for the refined ones, focal loss (0.25, 2), smooth L1 (beta 1/9)
on coordinates divided by 4 x stride with weights 0.5 / 1; lr 0.01 for 16 images, 500-iteration
warmup from lr/3, steps at 60k and 80k of 90k; short side 800, long side 1333, flipped copies;
test: the top 1000 points per level, score > 0.05, per-class NMS 0.5, 100 detections. The MSRA
backbone takes 0-255 RGB minus the pixel mean, std 1 (`model.backbone.pretrained=PATH`).
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.reppoints import RepPointsConfig
from simpledet.modeling.heads.reppoints_head import RepPointsHeadConfig
from simpledet.modeling.necks.reppoints_fpn import RepPointsFPNConfig
from simpledet.modeling.preprocess import MSRA_MEAN_255, UNIT_STD, InputConfig

config = Config(
    model=RepPointsConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1333, pixel_scale=255.0, mean=MSRA_MEAN_255, std=UNIT_STD),
        backbone=ResNetConfig(depth=50, variant="v1", norm="frozen_bn", freeze_at=2, out_features=("c3", "c4", "c5")),
        neck=RepPointsFPNConfig(out_channels=256, norm="gn", norm_groups=32),
        head=RepPointsHeadConfig(in_features=("p3", "p4", "p5", "p6", "p7"), strides=(8, 16, 32, 64, 128),
                                 conv_channels=256, point_channels=256, num_convs=3, norm="gn", norm_groups=32,
                                 num_points=9, transform="moment", gradient_mul=0.1, moment_lr_mult=0.01,
                                 prior_prob=0.01, point_scale=4.0, point_num_pos=1, pos_iou=0.5, neg_iou=0.5,
                                 min_pos_iou=0.0, loss_normalizer_scale=4.0, focal_alpha=0.25, focal_gamma=2.0,
                                 box_loss_beta=1.0 / 9, init_loss_weight=0.5, refine_loss_weight=1.0,
                                 pre_nms_top_n=1000, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True),
    # 1x: 90k iterations of 16 images; lr 0.01 for 16 images (SimpleDet: 0.005 / 8 per image)
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.01, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=500, warmup_factor=1.0 / 3, steps=(60000, 80000),
                      checkpoint_every=5000),
)
