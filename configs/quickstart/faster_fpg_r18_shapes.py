"""The quick-start detector with Feature Pyramid Grids in place of the FPN: Faster R-CNN with a slim
ResNet-18, trained from scratch on the synthetic shapes set (`simpledet data shapes data/shapes`)
on a CPU.

configs/quickstart/faster_r18_fpn_shapes.py with a 2-stage, 48-channel grid on P2-P6 (plain BN:
one process). The RPN reads all five levels, as SimpleDet's FPG configs do (a level left unread
would leave the grid's last column there without gradients), with one anchor size per level from
16 to 256 px.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.necks.fpg import FPGConfig

config = load_config(Path(__file__).parent / "faster_r18_fpn_shapes.py")
config.model.neck = FPGConfig(channels=48, num_stages=2, lateral_kernel=1, norm="bn")
config.model.rpn.in_features = ("p2", "p3", "p4", "p5", "p6")
config.model.rpn.anchor_sizes = ((16,), (32,), (64,), (128,), (256,))
