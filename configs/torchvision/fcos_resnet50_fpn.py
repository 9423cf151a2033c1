"""torchvision's fcos_resnet50_fpn, reproduced exactly for inference.

Load a torchvision checkpoint with `--weights` (or convert it once with `simpledet convert
torchvision`). As in torchvision: P6 from P5 and P7 from relu(P6), towers with one GroupNorm for
all levels, centerness on the box tower, distances relu(x) times the level's size (8-128) from
points at i x (padded size // feature size); centre sampling (radius 1.5), GIoU loss; at test
time scores sqrt(p x centerness) above 0.2, the top 1000 per level, per-class NMS 0.6, 100
detections. The classifier keeps a column for label 0; labels are COCO category ids
(data.contiguous_labels False). torchvision's COCO checkpoint: 39.2 box AP.
"""

from simpledet.config import Config, TestConfig, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.fcos import FCOSConfig
from simpledet.modeling.heads.fcos_head import FCOSHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_01, IMAGENET_STD_01, InputConfig

config = Config(
    model=FCOSConfig(
        num_classes=90,
        # ImageNet mean / std on [0, 1] RGB input, short side 800, long side <= 1333
        input=InputConfig(min_size=(800,), max_size=1333, mean=IMAGENET_MEAN_01, std=IMAGENET_STD_01,
                          pixel_scale=1.0),
        # fuse_frozen_bn=False: torchvision's arithmetic exactly, for bit-level parity
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2,
                              out_features=("c3", "c4", "c5"), fuse_frozen_bn=False),
        neck=FPNConfig(out_channels=256, extra_p6=False, p6p7_from="p5"),
        head=FCOSHeadConfig(in_features=("p3", "p4", "p5", "p6", "p7"), strides=(8, 16, 32, 64, 128),
                            num_convs=4, num_groups=32, prior_prob=0.01, norm_per_level=False,
                            centerness_on_box_tower=True, exp_distances=False, point_offset=0.0,
                            spacing_from_padded=True, background_column=True, assign_rule="torchvision",
                            size_bounds=(64.0, 128.0, 256.0, 512.0), center_sampling_radius=1.5,
                            loss_rule="torchvision", focal_alpha=0.25, focal_gamma=2.0,
                            score_rule="torchvision", pre_nms_top_n=1000, score_thresh=0.2, nms_thresh=0.6,
                            detections_per_img=100, bias_lr_mult=1.0, bias_weight_decay=None),
    ),
    data=coco2017(contiguous_labels=False),
    # torchvision's reference recipe trains FCOS at lr 0.01 for 16 images
    train=TrainConfig(max_iter=90000, steps=(60000, 80000), lr=0.01, lr_reference_batch=16,
                      warmup_iters=1000, warmup_factor=0.001, channels_last=False),
    # NCHW and unfolded frozen BN: torchvision's own arithmetic, bit for bit
    test=TestConfig(channels_last=False),
)
