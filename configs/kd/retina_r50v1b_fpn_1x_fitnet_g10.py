"""RetinaNet R50v1b-FPN distilled from a frozen R152v1b-FPN teacher (FitNet). SimpleDet zoo: 38.9 box AP.

SimpleDet's config/kd/retina_r50v1b_fpn_1x_fitnet_g10.py: the student's C5 features, through a 1x1 hint conv + ReLU,
imitate the teacher's C5 (mean squared error x 10.0). The teacher is SimpleDet's retina_r152v1b_fpn_1x model:
convert or train it, then point distill.teacher_weights at its checkpoint.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.engine.distill import DistillConfig

config = load_config(Path(__file__).parent / "../resnet_v1b/retina_r50v1b_fpn_1x.py")
config.distill = DistillConfig(teacher_config=str(Path(__file__).parent / "../resnet_v1b/retina_r152v1b_fpn_1x.py"),
                               teacher_weights="teacher_model/retina_r152v1b_fpn_1x.safetensors",
                               features=("c5",), weight=10.0)
