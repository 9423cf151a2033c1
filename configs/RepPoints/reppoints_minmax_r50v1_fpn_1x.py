"""RepPoints, ResNet-50 v1 (MSRA) + GroupNorm FPN P3-P7, min-max transform, 1x schedule.

SimpleDet zoo: 38.0 box AP on COCO minival (paper 38.2). As the moment config, except that boxes
are the points' bounding boxes (no moment transfer) and gradients are clipped at 35
(SimpleDet's config/RepPoints/reppoints_minmax_r50v1_fpn_1x.py: clip_gradient = 35, which MXNet
applies per element; ours clips the global norm, as the other configs with SimpleDet's clip do).
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "reppoints_moment_r50v1_fpn_1x.py")
config.model.head.transform = "minmax"
config.train.clip_grad_norm = 35.0
