"""Faster R-CNN, ResNet-50 v1b + PAFPN stacked 3 times (256 channels), 1x schedule.

SimpleDet zoo (models/FPG): 38.6 box AP on COCO val2017 (AP50 58.8, AP75 41.8; 8 GPUs x 2 images).
Settings are SimpleDet's config/FPG/faster_r50v1b_pafpn3@256_syncbn_1x.py: SyncBN everywhere (the
backbone, the neck and after both fc layers of the 2fc box head; launch with torchrun) with the
statistics trained; SimpleDet also fixes every BN's scale and shift ("gamma", "beta" among its fixed
parameters), which the neck and box head do here (freeze_norm_affine) and the backbone, whose
`norm="syncbn"` trains them, does not. Stem and stage 1 frozen; RPN 3x3 conv to 256 channels on
P2-P6; lr 0.02 for 16 images, 90k iterations, steps at 60k and 80k, 500 warmup iterations at 1/3;
images 800 / 1333 with flips. The rest is configs/resnet_v1b/faster_r50v1b_fpn_1x.py.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.conv_box_head import FixedAffineNormMLPHeadConfig
from simpledet.modeling.necks.pafpn import PAFPNConfig

config = load_config(Path(__file__).parent / "../resnet_v1b/faster_r50v1b_fpn_1x.py")
config.model.backbone.norm = "syncbn"
config.model.neck = PAFPNConfig(channels=256, num_stages=3, lateral_kernel=1, norm="syncbn", freeze_norm_affine=True)
config.model.rpn.conv_channels = 256
config.model.roi_heads.box_head = FixedAffineNormMLPHeadConfig(fc_dim=1024, num_fc=2, norm="syncbn",
                                                               freeze_norm_affine=True)
