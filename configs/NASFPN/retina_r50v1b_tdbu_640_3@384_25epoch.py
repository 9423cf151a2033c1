"""RetinaNet with the top-down / bottom-up neck: ResNet-50 v1b, 640 x 640, 3 cells at width 384,
25 epochs.

SimpleDet's zoo row for TD-BU (models/NASFPN/README.md) is at 1280 px: 44.7 box AP on COCO
test-dev (8x 1080Ti, 3 images per GPU, fp16, 10.5 GB, 12 img/s); it gives none for this 640 px
config. As the NAS-FPN 640 config (input, jitter, head with per-level BN, schedule), with
SimpleDet's neck for it (config/NASFPN/retina_r50v1b_tdbu_640_3@384_25epoch.py builds
models/FPG/builder.py PAFPNNeckP3P7): 3 cells at 384 channels, 3x3 stride-2 max pooling on the
bottom-up path. As SimpleDet's (its normalizer's wd_mult 0), the BN parameters take no weight
decay (train.norm_weight_decay = 0).
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.modeling.necks.tdbu import TDBUConfig

config = load_config(Path(__file__).parent / "retina_r50v1b_nasfpn_640_7@256_25epoch.py")
config.model.neck = TDBUConfig(num_stages=3, channels=384, norm="bn", stem_kernel=1, pool_kernel=3)
config.train.norm_weight_decay = 0.0
