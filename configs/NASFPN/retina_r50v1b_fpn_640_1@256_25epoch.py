"""RetinaNet baseline of the NAS-FPN study: ResNet-50 v1b + FPN with BN, 640 x 640, 25 epochs.

SimpleDet zoo (models/NASFPN/README.md): 37.4 box AP on COCO test-dev; 8x 1080Ti, 8 images per
GPU, fp16, 6.6 GB and 85 img/s in training. As the NAS-FPN 640 config (input, jitter, head with
per-level BN, schedule), with SimpleDet's neck for it (models/NASFPN/builder.py
RetinaNetNeckWithBN): the RetinaNet FPN on C3-C5 (P6 from C5, P7 from relu(P6)) with a BN after
each of the P3-P7 convs. As SimpleDet's (its normalizer's wd_mult 0), the BN parameters take no
weight decay (train.norm_weight_decay = 0).
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.necks.retina_fpn_bn import RetinaFPNWithNormConfig

config = load_config(Path(__file__).parent / "retina_r50v1b_nasfpn_640_7@256_25epoch.py")
config.model.neck = RetinaFPNWithNormConfig(out_channels=256, norm="bn")
config.train.norm_weight_decay = 0.0
