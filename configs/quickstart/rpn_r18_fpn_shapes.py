"""The quick-start's first stage alone: the RPN of faster_r18_fpn_shapes trained and tested by
itself on the shapes set, scored by proposal recall (AR@100 / 300 / 1000; `simpledet eval`
writes proposals.json)."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.rpn_only import RPNOnlyConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
faster = config.model
config.model = RPNOnlyConfig(num_classes=faster.num_classes, input=faster.input, backbone=faster.backbone,
                             neck=faster.neck, rpn=faster.rpn)
config.model.rpn.post_nms_top_n_test = 300
config.train.best_metric = "AR@1000"
