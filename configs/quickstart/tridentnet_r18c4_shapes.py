"""TridentNet on the quick-start pieces: slim R18 C4 backbone whose last stage-4 block runs as three
dilated branches, valid ranges scaled to the 16-56 px shapes."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.tridentnet import TridentConfig, TridentNetConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
quick = config.model
config.model = TridentNetConfig(
    num_classes=quick.num_classes,
    input=quick.input,
    backbone=ResNetConfig(depth=18, variant="v1b", norm="bn", freeze_at=0, base_width=32, out_features=("c4",)),
    trident=TridentConfig(dilations=(1, 2, 3), num_trident_blocks=1,
                            valid_ranges=((0.0, 32.0), (20.0, 48.0), (32.0, -1.0))),
    rpn=RPNConfig(in_features=("c4",), anchor_sizes=((16, 32, 64),), conv_channels=128,
                  batch_size_per_image=128, pre_nms_top_n_train=300, pre_nms_top_n_test=150,
                  post_nms_top_n_train=100, post_nms_top_n_test=50, allowed_border=None),
    roi_heads=RoIHeadsConfig(in_features=("c4",), box_head=MLPHeadConfig(fc_dim=256, fc_bias=True),
                             class_agnostic=True, batch_size_per_image=32, positive_fraction=0.5),
)
