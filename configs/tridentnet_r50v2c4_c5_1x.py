"""TridentNet, ResNet-50 v2 (MXNet gallery) C4, C5-128ROI head, 1x.

SimpleDet zoo: 37.1 box AP, 7.0G(5.3G) training memory, 20 img/s on 8x 1080Ti (SimpleDet's
figures). As the v1b TridentNet, with the pre-activation backbone (bn_data normalises 0-255 RGB)
and its C5 head (stage 5 + final BN + ReLU); SimpleDet's config/tridentnet_r50v2c4_c5_1x.py.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.modeling.heads.res5_head import Res5V2HeadConfig
from simpledet.modeling.preprocess import NO_MEAN, UNIT_STD

config = load_config(Path(__file__).parent / "resnet_v1b/tridentnet_r50v1bc4_c5_1x.py")
config.model.input.mean = NO_MEAN  # the backbone's bn_data whitens 0-255 RGB
config.model.input.std = UNIT_STD
config.model.backbone = ResNetV2Config(depth=50, norm="frozen_bn", freeze_at=2, out_features=("c4",), data_bn=True)
config.model.roi_heads.box_head = Res5V2HeadConfig(stride=1)
