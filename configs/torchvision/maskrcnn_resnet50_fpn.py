"""torchvision's maskrcnn_resnet50_fpn, reproduced exactly for inference.

torchvision builds it as fasterrcnn_resnet50_fpn plus the mask branch (RoIAlign 14x14 on P2-P5,
four 3x3 convs of 256, a 2x deconvolution, 91 mask logit maps), and so does this config. Load a
torchvision checkpoint with `--weights` or convert it once with `simpledet convert torchvision`;
torchvision reports 37.9 box AP / 34.6 mask AP for its COCO checkpoint. Labels are COCO category
ids (data.contiguous_labels is False), as in the Faster R-CNN config.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.mask_rcnn import MaskRCNNConfig
from simpledet.modeling.heads.mask_head import MaskHeadConfig

config = load_config(Path(__file__).parent / "fasterrcnn_resnet50_fpn.py")
config.model = MaskRCNNConfig.from_faster(
    config.model, MaskHeadConfig(in_features=("p2", "p3", "p4", "p5"), pooler_resolution=14,
                                 pooler_sampling_ratio=2, num_convs=4, conv_dim=256))
