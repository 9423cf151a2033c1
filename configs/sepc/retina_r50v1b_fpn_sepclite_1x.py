"""RetinaNet R50v1b-FPN with SEPC-lite: PConv + iBN, deformable head branch convs, 1x.

SimpleDet zoo (models/sepc/README.md): 38.6 box AP on COCO val2017, 8x 2080Ti x 4 images, fp16,
9467 MB, 36 img/s. SimpleDet's config/sepc/retina_r50v1b_fpn_sepclite_1x.py:
retina_r50v1b_fpn_pconv_ibn_1x.py whose head branch convs (CConv / LConv) are deformable (DCNv1,
one deformable group, zero-initialised offset conv with bias) on P4-P7 and plain on P3
(start_level 1); the PConvs stay plain.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "retina_r50v1b_fpn_pconv_ibn_1x.py")
config.model.head.branch_deform = True
