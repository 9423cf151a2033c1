"""torchvision's retinanet_resnet50_fpn (v1), reproduced exactly for inference.

Load a torchvision checkpoint with `--weights` (or convert it once with `simpledet convert
torchvision`). As in torchvision: the FPN's P6 comes from P5 (LastLevelP6P7(256, 256)), anchor
sizes are truncated to whole pixels, the classifier keeps a column for label 0, the box loss is L1
and up to 300 detections are kept. Labels are COCO category ids (data.contiguous_labels False).
torchvision's COCO checkpoint: 36.4 box AP.
"""

from simpledet.config import Config, TestConfig, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.retinanet import RetinaNetConfig
from simpledet.modeling.heads.retina_head import RetinaHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_01, IMAGENET_STD_01, InputConfig

config = Config(
    model=RetinaNetConfig(
        num_classes=90,
        # ImageNet mean / std on [0, 1] RGB input, short side 800, long side <= 1333
        input=InputConfig(min_size=(800,), max_size=1333, mean=IMAGENET_MEAN_01, std=IMAGENET_STD_01,
                          pixel_scale=1.0),
        # fuse_frozen_bn=False: torchvision's arithmetic exactly, for bit-level parity
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2,
                              out_features=("c3", "c4", "c5"), fuse_frozen_bn=False),
        neck=FPNConfig(out_channels=256, extra_p6=False, p6p7_from="p5"),
        head=RetinaHeadConfig(
            in_features=("p3", "p4", "p5", "p6", "p7"),
            anchor_sizes=tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (32, 64, 128, 256, 512)),
            aspect_ratios=(0.5, 1.0, 2.0), background_column=True, fg_iou=0.5, bg_iou=0.4,
            box_loss="l1", pre_nms_top_n=1000, score_thresh=0.05, nms_thresh=0.5, detections_per_img=300),
    ),
    data=coco2017(contiguous_labels=False),
    # torchvision's reference recipe trains RetinaNet at lr 0.01 for 16 images
    train=TrainConfig(max_iter=90000, steps=(60000, 80000), lr=0.01, lr_reference_batch=16,
                      warmup_iters=1000, warmup_factor=0.001, channels_last=False),
    # NCHW and unfolded frozen BN: torchvision's own arithmetic, bit for bit
    test=TestConfig(channels_last=False),
)
