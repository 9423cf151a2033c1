"""The quick-start double-prediction R-CNN (SimpleDet's CrowdHuman DoublePred with refine): the
quick-start Faster R-CNN (faster_r18_fpn_shapes.py) whose R-CNN stage predicts two boxes per
proposal, trained with the EMD loss, refined once, and decoded with set NMS; on the synthetic
shapes set, on a CPU. Its 2fc head has biases, as SimpleDet's DoublePred head."""

from dataclasses import asdict
from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.crowdhuman import DoublePredRCNNConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.double_pred_head import DoublePredRoIHeadsConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
faster = config.model
roi_heads = {k: v for k, v in asdict(faster.roi_heads).items() if k != "box_head"}
config.model = DoublePredRCNNConfig(
    num_classes=faster.num_classes, input=faster.input, backbone=faster.backbone, neck=faster.neck, rpn=faster.rpn,
    roi_heads=DoublePredRoIHeadsConfig(**roi_heads, box_head=MLPHeadConfig(fc_dim=256, num_fc=2, fc_bias=True),
                                       refine=True, refine_repeat=4, set_nms=True),
)
