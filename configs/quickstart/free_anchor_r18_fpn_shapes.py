"""FreeAnchor at quick-start size: a slim ResNet-18 FPN (P3-P7, P6 and P7 from C5) trained from
scratch on the synthetic shapes set (`simpledet data shapes data/shapes`) on a CPU.

As configs/quickstart/faster_r18_fpn_shapes.py, scaled to 128 px images with objects of 16-56 px:
half-width ResNet-18 with trainable BatchNorm, a 64-channel FPN, anchors of 2 (not 4) strides x
2^(0, 1/3, 2/3), one conv per subnet (from scratch, the 4-conv towers' 0.01-std init takes far
more steps) and bags of 20 anchors (a 128 px image has few anchors near each object); the loss
is otherwise SimpleDet's.
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.free_anchor import FreeAnchorConfig
from simpledet.modeling.heads.free_anchor_head import FreeAnchorHeadConfig
from simpledet.modeling.heads.retina_head import retina_anchor_sizes
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=FreeAnchorConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0),
        backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                              out_features=("c3", "c4", "c5")),
        neck=FPNConfig(out_channels=64, extra_p6=False, p6p7_from="c5"),
        head=FreeAnchorHeadConfig(anchor_sizes=retina_anchor_sizes(octave_base=2.0), num_convs=1, bag_size=20),
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.02, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), clip_grad_norm=10.0,
                      checkpoint_every=300, log_every=20, seed=0, device="cpu"),
)
