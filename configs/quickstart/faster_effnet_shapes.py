"""A quick-start-sized EfficientNet detector: Faster R-CNN with a tiny EfficientNet + BN FPN, the
EfficientNet configs' model (configs/efficientnet/) shrunk to train from scratch on the synthetic
shapes set (`simpledet data shapes data/shapes`) on a CPU.

SimpleDet's nine-stage layout (strides, kernels, ReLU6 MBConv units with SE, outputs of stages
3, 4, 6 and 9) with one or two units per stage and 8-128 channels; a 64-channel FPN with BN on
P2-P5, one anchor size per level from 16 to 128 px, fewer proposals and RoIs, and a 256-d 2fc box
head with BN. Training settings are the ResNet-18 quick start's (configs/quickstart/faster_r18_fpn_shapes.py).
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.efficientnet import EfficientNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.box_head_bn import NormMLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=FasterRCNNConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0),
        backbone=EfficientNetConfig(repeats=(1, 1, 2, 2, 1, 2, 1, 1, 1), channels=(16, 8, 16, 24, 32, 48, 64, 64, 128),
                                    norm="bn"),
        neck=NormFPNConfig(out_channels=64, extra_p6=False, norm="bn"),
        rpn=RPNConfig(in_features=("p2", "p3", "p4", "p5"), anchor_sizes=((16,), (32,), (64,), (128,)),
                      batch_size_per_image=128, pre_nms_top_n_train=300, pre_nms_top_n_test=150,
                      post_nms_top_n_train=200, post_nms_top_n_test=50, allowed_border=None),
        roi_heads=RoIHeadsConfig(box_head=NormMLPHeadConfig(fc_dim=256, norm="bn"), batch_size_per_image=64,
                                 class_agnostic=True, score_thresh=0.05),
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.04, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), checkpoint_every=300,
                      log_every=20, seed=0, device="cpu"),
)
