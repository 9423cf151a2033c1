"""RPN alone, ResNet-50 v2 (MXNet gallery) C4, 1x: SimpleDet's config/rpn_r50v2c4_1x.py.

The RPN of faster_r50v2c4_c5_256roi_1x trained and tested by itself (symbol/builder.py RPN, with
its MXNetResNet50V2 backbone up to C4 and no neck): 15 anchors (scales 2-32 x 16 px, ratios
0.5/1/2) on C4, a 512-channel 3x3 conv, 12000 / 6000 boxes before NMS 0.7 and 2000 / 1000 after,
in training / testing. `simpledet eval` writes proposals.json and reports proposal recall (see
rpn_r50v1_fpn_1x). SimpleDet publishes no figure for it.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.rpn_only import RPNOnlyConfig

config = load_config(Path(__file__).parent / "faster_r50v2c4_c5_256roi_1x.py")
faster = config.model
config.model = RPNOnlyConfig(num_classes=faster.num_classes, input=faster.input, backbone=faster.backbone,
                             neck=None, rpn=faster.rpn)
config.model.rpn.pre_nms_top_n_train, config.model.rpn.pre_nms_top_n_test = 12000, 6000
config.model.rpn.post_nms_top_n_train, config.model.rpn.post_nms_top_n_test = 2000, 1000
config.model.rpn.nms_thresh = 0.7
config.train.best_metric = "AR@1000"
