"""RetinaNet R50v1b-FPN with 4 pyramid convolutions and integrated BN (SEPC's PConv + iBN), 1x.

SimpleDet zoo (models/sepc/README.md): 37.6 box AP on COCO val2017, 8x 2080Ti x 4 images, fp16,
9467 MB, 40 img/s. SimpleDet's config/sepc/retina_r50v1b_fpn_pconv_ibn_1x.py:
retina_r50v1b_fpn_pconv_1x.py with one synchronised BN after each PConv and after each head branch
conv (CConv / LConv) whose statistics span all five levels at once (iBN).
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "retina_r50v1b_fpn_pconv_1x.py")
config.model.neck.integrated_norm = "syncbn"
config.model.head.integrated_norm = "syncbn"
