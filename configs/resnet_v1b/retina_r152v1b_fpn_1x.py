"""RetinaNet R152v1b-FPN 4Conv, 1x schedule. SimpleDet zoo: 40.4 box AP."""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "retina_r50v1b_fpn_1x.py")
config.model.backbone.depth = 152
