"""Double-prediction R-CNN (CrowdDet's "multiple instance prediction", EMD loss), ResNet-50 v1b +
FPN with BN, on CrowdHuman, 10 epochs.

SimpleDet zoo (models/crowdhuman): AP 88.64, MR^-2 45.52 on CrowdHuman val (8 GPUs x 2 images,
fp16). The Faster R-CNN config (faster_r50v1b_fpn_1x.py) with SimpleDet's DoublePred parts
(config/crowdhuman/doublepred_r50v1b_fpn_1x.py): each proposal predicts two boxes with their
scores, trained with the EMD loss against its two most-overlapping people; the 2fc head has
biases (X.fc); the test keeps plain NMS 0.5, as SimpleDet's config does (set NMS is the
_refine config's).
"""

from dataclasses import asdict
from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.crowdhuman import CrowdHumanDoublePredConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.double_pred_head import DoublePredRoIHeadsConfig

config = load_config(Path(__file__).parent / "faster_r50v1b_fpn_1x.py")
faster = config.model
roi_heads = {k: v for k, v in asdict(faster.roi_heads).items() if k != "box_head"}
config.model = CrowdHumanDoublePredConfig(
    num_classes=faster.num_classes, input=faster.input, backbone=faster.backbone, neck=faster.neck, rpn=faster.rpn,
    roi_heads=DoublePredRoIHeadsConfig(**roi_heads, box_head=MLPHeadConfig(fc_dim=1024, num_fc=2, fc_bias=True),
                                       refine=False, set_nms=False),
)
