"""RetinaNet R50v1b-FPN with 4 pyramid convolutions (SEPC's PConv, no iBN, no deformable convs), 1x.

SimpleDet zoo (models/sepc/README.md): 37.2 box AP on COCO val2017, 8x 2080Ti x 4 images, fp16,
9111 MB, 43 img/s. SimpleDet's config/sepc/retina_r50v1b_fpn_pconv_1x.py: the folder's baseline
(retina_r50v1b_fpn_1x.py here: BN trained, BN on the FPN outputs, 32 images at lr 0.02, 43,974
iterations) with 4 PConvs of 256 channels after the FPN, standing in for the head's four 3x3
convs; each subnet keeps one plain 3x3 conv (CConv / LConv) + ReLU before its predictor.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.heads.sepc_head import SEPCHeadConfig
from simpledet.modeling.necks.sepc import SEPCNeckConfig

config = load_config(Path(__file__).parent / "retina_r50v1b_fpn_1x.py")
config.model.neck = SEPCNeckConfig(out_channels=256, fpn_norm="syncbn", pconv_num=4, pconv_deform=False,
                                   integrated_norm=None, start_level=1)
retina = config.model.head  # the baseline's anchors, losses and decoding, kept
config.model.head = SEPCHeadConfig(**vars(retina) | {"num_convs": 0}, branch_deform=False, integrated_norm=None,
                                   start_level=1)
