"""TridentNet, ResNet-50 v1 (MSRA: stride in the 1x1 conv) C4, C5-128ROI head, 1x.

As the v1b TridentNet (configs/resnet_v1b/tridentnet_r50v1bc4_c5_1x.py), with MSRA's backbone,
which takes 0-255 RGB with the pixel mean subtracted and std 1 (SimpleDet's
config/tridentnet_r50v1c4_c5_1x.py: builder_v2 TridentResNetV1C4, pretrain resnet-v1-50).
SimpleDet publishes no figure for it."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.preprocess import MSRA_MEAN_255, UNIT_STD

config = load_config(Path(__file__).parent / "resnet_v1b/tridentnet_r50v1bc4_c5_1x.py")
config.model.backbone.variant = "v1"
config.model.roi_heads.box_head.variant = "v1"
config.model.input.mean = MSRA_MEAN_255
config.model.input.std = UNIT_STD
