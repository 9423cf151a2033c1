"""RepPoints at quick-start size: a slim ResNet-18 with a 64-channel GroupNorm FPN and point head,
trained from scratch on the synthetic shapes set (`simpledet data shapes data/shapes`) on the CPU.

Scaled to 128 px images with objects of 16-56 px: half-width ResNet-18 with trainable BatchNorm,
P3-P7 at 64 channels (GroupNorm in 32 groups, as SimpleDet), and the point assignment's scale 2
instead of 4 so that objects pick P3 or P4 rather than all P3; the rest is SimpleDet's RepPoints
(moment transform, 9 points, focal loss, the two box losses, NMS 0.5).
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.reppoints import RepPointsConfig
from simpledet.modeling.heads.reppoints_head import RepPointsHeadConfig
from simpledet.modeling.necks.reppoints_fpn import RepPointsFPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=RepPointsConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0),
        backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                              out_features=("c3", "c4", "c5")),
        neck=RepPointsFPNConfig(out_channels=64, norm="gn", norm_groups=32),
        head=RepPointsHeadConfig(conv_channels=64, point_channels=64, point_scale=2.0, pre_nms_top_n=200,
                                 score_thresh=0.05),
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.02, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), clip_grad_norm=10.0,
                      checkpoint_every=300, log_every=20, seed=0, device="cpu"),
)
