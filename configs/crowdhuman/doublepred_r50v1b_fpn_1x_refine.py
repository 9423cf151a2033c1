"""Double-prediction R-CNN with the refine module, ResNet-50 v1b + FPN with BN, on CrowdHuman.

SimpleDet zoo (models/crowdhuman): AP 88.81, MR^-2 45.02 on CrowdHuman val (8 GPUs x 2 images,
fp16). doublepred_r50v1b_fpn_1x.py plus SimpleDet's refine (config/crowdhuman/
doublepred_r50v1b_fpn_1x_refine.py: refine_mode, repeat_time 4): each prediction, tiled 4 times,
joins the RoI feature through a shared fc layer and predicts again, with its own EMD loss; the test
uses the refined predictions and set NMS 0.5 (the two boxes of a proposal do not suppress each other).
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "doublepred_r50v1b_fpn_1x.py")
config.model.roi_heads.refine = True
config.model.roi_heads.refine_repeat = 4
config.model.roi_heads.set_nms = True
