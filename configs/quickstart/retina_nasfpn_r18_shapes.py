"""NAS-FPN RetinaNet at quick-start size: a slim ResNet-18, 2 NAS-FPN cells at 64 channels and a
head with per-level BN, trained from scratch on the synthetic shapes set (`simpledet data shapes
data/shapes`) on a CPU with SimpleDet's large-scale jitter.

As configs/NASFPN/retina_r50v1b_nasfpn_640_7@256_25epoch.py scaled to 128 px images with objects
of 16-56 px: a 128 square (jitter 0.8-1.2, random 128 x 128 window, padded to the square without
another resize), half-width ResNet-18 with trainable BatchNorm, 2 cells instead of 7, 2-conv
64-channel subnets, anchors of 2 (not 4) strides x 2^(0, 1/3, 2/3); the matching, losses and
decoding are SimpleDet's NAS-FPN settings.
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.data.scale_jitter import ScaleJitterConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.retinanet import RetinaNetConfig
from simpledet.modeling.heads.retina_head import retina_anchor_sizes
from simpledet.modeling.heads.retina_head_bn import RetinaHeadWithNormConfig
from simpledet.modeling.necks.nasfpn import NASFPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=RetinaNetConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=128, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0, size_divisible=128, fixed_canvas=True, train_resize=False),
        backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                              out_features=("c3", "c4", "c5")),
        neck=NASFPNConfig(num_stages=2, channels=64, norm="bn"),
        head=RetinaHeadWithNormConfig(anchor_sizes=retina_anchor_sizes(octave_base=2.0), num_convs=2,
                                      conv_channels=64, norm="bn", fg_iou=0.5, bg_iou=0.5),
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8,
                    scale_jitter=ScaleJitterConfig(size=128, scale_min=0.8, scale_max=1.2)),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.02, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), clip_grad_norm=10.0,
                      checkpoint_every=300, log_every=20, seed=0, device="cpu"),
)
