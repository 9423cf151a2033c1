"""FreeAnchor, ResNet-50 v1 (MSRA) + FPN P3-P7, 4Conv head, 1x schedule.

SimpleDet zoo: 38.3 box AP on COCO minival (SimpleDet's models/FreeAnchor/README.md). Settings are
SimpleDet's (config/FreeAnchor/free_anchor_r50v1_fpn_1x.py): RetinaNet's body (P6 and P7 from C5,
anchors 4 x stride x 2^(0, 1/3, 2/3) with ratios 0.5/1/2), the classifier's prior at 0.02, bags of
50 anchors, alpha 0.5, gamma 2, IoU threshold 0.6, deltas with std (0.1, 0.1, 0.2, 0.2); 800 / 1333
images, lr 0.01 for 16 images (0.005 / 8 per image) with a 500-iteration warmup from lr/3, steps at
60k and 80k of 90k, gradients clipped at 35 (SimpleDet clips each element, we clip the norm);
test: top 1000 per level above 0.05, NMS 0.5, 100 detections. The MSRA backbone takes 0-255 RGB
with the pixel mean subtracted and std 1.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.detectors.free_anchor import FreeAnchorConfig
from simpledet.modeling.heads.free_anchor_head import FreeAnchorHeadConfig
from simpledet.modeling.heads.retina_head import retina_anchor_sizes

config = load_config(Path(__file__).parents[1] / "retina_r50v1_fpn_1x.py")
retina = config.model
config.model = FreeAnchorConfig(
    num_classes=80,
    input=retina.input,
    backbone=retina.backbone,
    neck=retina.neck,
    head=FreeAnchorHeadConfig(in_features=("p3", "p4", "p5", "p6", "p7"),
                              anchor_sizes=retina_anchor_sizes((8, 16, 32, 64, 128), octave_base=4.0),
                              aspect_ratios=(0.5, 1.0, 2.0), num_convs=4, prior_prob=0.02, alpha=0.5, gamma=2.0,
                              bag_size=50, iou_thresh=0.6, box_loss_beta=0.11, box_loss_weight=0.75,
                              box_weights=(10.0, 10.0, 5.0, 5.0), pre_nms_top_n=1000, score_thresh=0.05,
                              nms_thresh=0.5, detections_per_img=100),
)
config.train.warmup_iters = 500
config.train.clip_grad_norm = 35.0
