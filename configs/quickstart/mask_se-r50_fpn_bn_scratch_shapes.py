"""Mask R-CNN with an SE-ResNet from scratch, on the quick-start pieces: the slim R18-FPN Mask R-CNN
(configs/quickstart/mask_r18_fpn_shapes.py) with a quarter-width SE-ResNet-50 v1b (squeeze-excitation
after every bottleneck's 3x3 conv), BN after every FPN, box-head and mask-head layer, and the mask
head's squeeze-excitations: SimpleDet's config/se/mask_se-r50v1b_fpn_bn_scratch_2x.py, scaled down."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.backbones.se_resnet import SEResNetConfig
from simpledet.modeling.heads.box_head_bn import NormMLPHeadConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig

config = load_config(Path(__file__).parent / "mask_r18_fpn_shapes.py")
model = config.model
model.backbone = SEResNetConfig(depth=50, variant="v1b", norm="bn", freeze_at=0, base_width=16, se_reduction=4)
model.neck = NormFPNConfig(out_channels=model.neck.out_channels, extra_p6=model.neck.extra_p6, norm="bn")
model.roi_heads.box_head = NormMLPHeadConfig(fc_dim=model.roi_heads.box_head.fc_dim, num_fc=2, norm="bn")
model.mask_head.norm = "bn"
model.mask_head.squeeze_excitation = True
