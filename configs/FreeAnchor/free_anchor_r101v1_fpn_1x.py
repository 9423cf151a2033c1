"""FreeAnchor, ResNet-101 v1 (MSRA) + FPN P3-P7, 4Conv head, 1x schedule.

SimpleDet zoo: 40.4 box AP on COCO minival (SimpleDet's models/FreeAnchor/README.md). As the R50
config, with a 1000-iteration warmup (config/FreeAnchor/free_anchor_r101v1_fpn_1x.py).
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "free_anchor_r50v1_fpn_1x.py")
config.model.backbone.depth = 101
config.train.warmup_iters = 1000
