"""RepPoints, ResNet-101 v1 (MSRA) + GroupNorm FPN P3-P7, moment transform, 2x schedule.

SimpleDet zoo: 40.7 box AP on COCO minival (paper 40.3). As the R50 moment config with depth 101,
180k iterations (steps at 120k and 160k) and gradients clipped at 35 (SimpleDet's
config/RepPoints/reppoints_moment_r101v1_fpn_2x.py; MXNet clips per element, we the global norm).
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "reppoints_moment_r50v1_fpn_1x.py")
config.model.backbone.depth = 101
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
config.train.clip_grad_norm = 35.0
