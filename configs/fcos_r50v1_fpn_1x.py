"""FCOS, ResNet-50 v1 (MSRA: stride in the 1x1 conv) + FPN P3-P7, GroupNorm towers, 1x.

SimpleDet's config/fcos_r50v1_fpn_1x.py (models/FCOS); SimpleDet publishes no AP for it. P6 from
P5, P7 from relu(P6); two 4-conv towers with GroupNorm 32 (per level), centerness on the
classification tower, distances exp(s_l x) in pixels; a level takes the objects whose largest
point-to-side distance is in [0, 64), [64, 128), [128, 256), [256, 512), [512, inf); focal loss
(0.25, 2), IoU loss and centerness BCE. Test: class probabilities above 0.05, top 1000 per level,
scores sqrt(p x centerness), per-class NMS 0.6, 100 detections. Training: 90k iterations of 16
images, lr 0.01 for 16 images with a 500-iteration warmup from lr/3, steps at 60k and 80k; 800 /
1333, flipped copies. The backbone takes 0-255 RGB minus the MSRA pixel mean, std 1 (a SimpleDet
resnet-50 file through `model.backbone.pretrained`; conv0 and stage 1 frozen, frozen BN).
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.fcos import FCOSConfig
from simpledet.modeling.heads.fcos_head import FCOSHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import MSRA_MEAN_255, UNIT_STD, InputConfig

config = Config(
    model=FCOSConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1333, pixel_scale=255.0, mean=MSRA_MEAN_255, std=UNIT_STD),
        backbone=ResNetConfig(depth=50, variant="v1", norm="frozen_bn", freeze_at=2,
                              out_features=("c3", "c4", "c5")),
        neck=FPNConfig(out_channels=256, extra_p6=False, p6p7_from="p5"),
        head=FCOSHeadConfig(in_features=("p3", "p4", "p5", "p6", "p7"), strides=(8, 16, 32, 64, 128),
                            num_convs=4, num_groups=32, prior_prob=0.01, norm_per_level=True,
                            centerness_on_box_tower=False, exp_distances=True, point_offset=0.5,
                            spacing_from_padded=False, assign_rule="simpledet",
                            size_bounds=(64.0, 128.0, 256.0, 512.0), loss_rule="simpledet",
                            focal_alpha=0.25, focal_gamma=2.0, score_rule="simpledet", pre_nms_top_n=1000,
                            score_thresh=0.05, nms_thresh=0.6, detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True),
    # 1x: 90k iterations of 16 images; lr 0.01 for 16 images (SimpleDet: 0.01 / 16 per image)
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.01, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=500, warmup_factor=1.0 / 3, steps=(60000, 80000),
                      checkpoint_every=5000),
)
