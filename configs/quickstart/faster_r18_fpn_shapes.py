"""The quick-start detector: Faster R-CNN with a slim ResNet-18 FPN, trained from scratch on the
synthetic shapes set (`simpledet data shapes data/shapes`) in a few minutes on a 2-core CPU.

Everything is scaled to 128 px images with objects of 16-56 px: half-width ResNet-18 with
trainable BatchNorm (nothing pretrained to freeze), a 64-channel FPN on P2-P5, one anchor size
per level from 16 to 128 px, fewer proposals and RoIs, and a 256-d box head.
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=FasterRCNNConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0),
        backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32),
        neck=FPNConfig(out_channels=64, extra_p6=False),
        rpn=RPNConfig(in_features=("p2", "p3", "p4", "p5"), anchor_sizes=((16,), (32,), (64,), (128,)),
                      batch_size_per_image=128, pre_nms_top_n_train=300, pre_nms_top_n_test=150,
                      post_nms_top_n_train=200, post_nms_top_n_test=50, allowed_border=None),
        roi_heads=RoIHeadsConfig(box_head=MLPHeadConfig(fc_dim=256, fc_bias=True), batch_size_per_image=64,
                                 class_agnostic=True, score_thresh=0.05),
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.04, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), checkpoint_every=300,
                      log_every=20, seed=0, device="cpu"),
)
