"""RetinaNet, ResNet-50 v1b (GluonCV) + FPN P3-P7, 4Conv head, 1x schedule.

SimpleDet zoo: 36.6 box AP on COCO minival (8 GPUs x 2 images). Settings are SimpleDet's
(config/resnet_v1b/retina_r50v1b_fpn_1x.py): P6 and P7 from C5, anchors 4 x stride x
2^(0, 1/3, 2/3) with ratios 0.5/1/2, IoU 0.5 / 0.4, focal loss (0.25, 2), smooth L1 (beta 0.11),
lr 0.01 for 16 images with a 1000-iteration warmup from lr/3; test: top 1000 per level above
0.05, NMS 0.5, 100 detections. The pretrained backbone is GluonCV's resnet50_v1b
(`model.backbone.pretrained=PATH`), which expects ImageNet mean/std on 0-255 RGB.
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.retinanet import RetinaNetConfig
from simpledet.modeling.heads.retina_head import RetinaHeadConfig, retina_anchor_sizes
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

config = Config(
    model=RetinaNetConfig(
        num_classes=80,
        input=InputConfig(min_size=(800,), max_size=1333, pixel_scale=255.0, mean=IMAGENET_MEAN_255,
                          std=IMAGENET_STD_255),
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2,
                              out_features=("c3", "c4", "c5")),
        neck=FPNConfig(out_channels=256, extra_p6=False, p6p7_from="c5"),
        head=RetinaHeadConfig(in_features=("p3", "p4", "p5", "p6", "p7"),
                              anchor_sizes=retina_anchor_sizes((8, 16, 32, 64, 128), octave_base=4.0),
                              aspect_ratios=(0.5, 1.0, 2.0), num_convs=4, prior_prob=0.01,
                              fg_iou=0.5, bg_iou=0.4, focal_alpha=0.25, focal_gamma=2.0,
                              box_loss="smooth_l1", box_loss_beta=0.11, box_weights=(1.0, 1.0, 1.0, 1.0),
                              pre_nms_top_n=1000, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True),
    # 1x: 90k iterations of 16 images; lr 0.01 for 16 images (SimpleDet: 0.005 / 8 per image)
    train=TrainConfig(max_iter=90000, batch_size=2, lr=0.01, lr_reference_batch=16, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=1000, warmup_factor=1.0 / 3, steps=(60000, 80000),
                      checkpoint_every=5000),
)
