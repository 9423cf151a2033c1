"""RPN alone, ResNet-50 v1 (MSRA) + FPN, 1x: SimpleDet's config/rpn_r50v1_fpn_1x.py.

The first stage of faster_r50v1_fpn_1x trained and tested by itself (symbol/builder.py RPN):
anchors 8 x stride 4..64 with ratios 0.5/1/2, 2000 / 1000 proposals after NMS 0.7 in training /
testing, 256 sampled anchors per image, the 1x schedule of 16 images at lr 0.02. `simpledet eval`
writes proposals.json and scores them as SimpleDet's rpn_test.py does: class-agnostic average
recall at 100, 300 and 1000 proposals and by object size (metrics.json: AR@100, AR@300, AR@1000,
ARs@1000, ARm@1000, ARl@1000). SimpleDet publishes no figure for it.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.rpn_only import RPNOnlyConfig

config = load_config(Path(__file__).parent / "faster_r50v1_fpn_1x.py")
faster = config.model
config.model = RPNOnlyConfig(num_classes=faster.num_classes, input=faster.input, backbone=faster.backbone,
                             neck=faster.neck, rpn=faster.rpn)
config.model.rpn.pre_nms_top_n_train, config.model.rpn.pre_nms_top_n_test = 2000, 1000
config.model.rpn.post_nms_top_n_train, config.model.rpn.post_nms_top_n_test = 2000, 1000
config.train.best_metric = "AR@1000"
