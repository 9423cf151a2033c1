"""Mask R-CNN trained from scratch with GroupNorm everywhere, on the quick-start pieces: the slim
R18-FPN Mask R-CNN (configs/quickstart/mask_r18_fpn_shapes.py) with a GroupNorm after every conv of
the backbone, the FPN (lateral and output), the box head's fcs and the mask head's convs, as
SimpleDet's config/scratch/mask_r50v1b_fpn_gn_scratch_2x.py builds them."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.box_head_bn import NormMLPHeadConfig
from simpledet.modeling.necks.fpn_bn import NormFPNConfig

config = load_config(Path(__file__).parent / "mask_r18_fpn_shapes.py")
model = config.model
model.backbone.norm = "gn"
model.neck = NormFPNConfig(out_channels=model.neck.out_channels, extra_p6=model.neck.extra_p6, norm="gn")
model.roi_heads.box_head = NormMLPHeadConfig(fc_dim=model.roi_heads.box_head.fc_dim, num_fc=2, norm="gn")
model.mask_head.norm = "gn"
