"""RetinaNet R50v1b-FPN with full SEPC: deformable PConvs + iBN, deformable head branch convs, 1x.

SimpleDet zoo (models/sepc/README.md): 39.7 box AP on COCO val2017, 8x 2080Ti x 4 images, fp16,
9471 MB, 25 img/s. SimpleDet's config/sepc/retina_r50v1b_fpn_sepc_1x.py:
retina_r50v1b_fpn_sepclite_1x.py whose PConvs are deformable too: each of a PConv's three convs
is DCNv1 (one deformable group, its own zero-initialised offset conv, shared by the levels) where it
writes to P4-P7, plain where it writes to P3.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "retina_r50v1b_fpn_sepclite_1x.py")
config.model.neck.pconv_deform = True
