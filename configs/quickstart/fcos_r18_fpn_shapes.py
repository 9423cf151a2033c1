"""A quick-start FCOS: SimpleDet's FCOS head on a slim ResNet-18 FPN, trained from scratch on the
synthetic shapes set (`simpledet data shapes data/shapes`) on a 2-core CPU.

Scaled to 128 px images with objects of 16-56 px: half-width ResNet-18 with trainable BatchNorm,
a 64-channel FPN on P3-P5 (strides 8-32), two 2-conv towers with GroupNorm 16, and level bounds
at 32 and 64 px of largest point-to-side distance, so that the three levels share the objects.
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.fcos import FCOSConfig
from simpledet.modeling.heads.fcos_head import FCOSHeadConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=FCOSConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0),
        backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                              out_features=("c3", "c4", "c5")),
        neck=FPNConfig(out_channels=64, extra_p6=False, p6p7_from=None),
        head=FCOSHeadConfig(in_features=("p3", "p4", "p5"), strides=(8, 16, 32), num_convs=2, num_groups=16,
                            size_bounds=(32.0, 64.0), pre_nms_top_n=200, score_thresh=0.05),
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.02, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), checkpoint_every=300,
                      log_every=20, seed=0, device="cpu"),
)
