"""A quick-start RetinaNet with full SEPC: a slim ResNet-18 FPN, two deformable pyramid convolutions
with integrated BN, and deformable head branch convs, trained from scratch on the synthetic shapes
set (`simpledet data shapes data/shapes`) on a CPU.

Scaled to 128 px images with objects of 16-56 px: half-width ResNet-18 with trainable BatchNorm,
a 64-channel FPN on P3-P7 with BN on each output (1x1 at P7), anchors of 2 x stride x
2^(0, 1/3, 2/3) (16 px on P3), and 2 PConvs where SimpleDet's configs/sepc stack 4. Every BN uses
SimpleDet's eps 1e-4; the running statistics follow torch's momentum 0.1 (SimpleDet's 0.003 is
for 40k iterations, not a few hundred).
"""

from simpledet.config import Config, DataConfig, DatasetConfig, TrainConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.sepc import SEPCRetinaNetConfig
from simpledet.modeling.heads.retina_head import retina_anchor_sizes
from simpledet.modeling.heads.sepc_head import SEPCHeadConfig
from simpledet.modeling.necks.sepc import SEPCNeckConfig
from simpledet.modeling.preprocess import InputConfig

config = Config(
    model=SEPCRetinaNetConfig(
        num_classes=4,
        input=InputConfig(min_size=(128,), max_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          pixel_scale=1.0),
        backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32,
                              out_features=("c3", "c4", "c5")),
        neck=SEPCNeckConfig(out_channels=64, fpn_norm="bn", pconv_num=2, pconv_deform=True, integrated_norm="bn",
                            start_level=1),
        head=SEPCHeadConfig(anchor_sizes=retina_anchor_sizes(octave_base=2.0), num_convs=0, branch_deform=True,
                            integrated_norm="bn", start_level=1, score_thresh=0.05, detections_per_img=100),
        bn_eps=1e-4, bn_momentum=0.1,
    ),
    data=DataConfig(train=DatasetConfig("runs/shapes/annotations/train.json", "runs/shapes/train"),
                    val=DatasetConfig("runs/shapes/annotations/val.json", "runs/shapes/val"),
                    num_workers=1, flip=True, eval_batch_size=8),
    train=TrainConfig(max_iter=900, batch_size=8, lr=0.02, lr_reference_batch=8, weight_decay=1e-4,
                      warmup_iters=100, warmup_factor=0.1, steps=(650, 820), checkpoint_every=300,
                      log_every=20, seed=0, device="cpu"),
)
