"""NAS-FPN RetinaNet, ResNet-50 v1b, 1024 x 1024 input, 7 cells at width 256, 25 epochs.

SimpleDet zoo (models/NASFPN/README.md): 44.2 box AP on COCO test-dev; 8x 1080Ti, 4 images per
GPU, fp16, 9.1 GB and 17 img/s in training. As the 640 config, with SimpleDet's changes
(config/NASFPN/retina_r50v1b_nasfpn_1024_7@256_25epoch.py): synchronised BN across the GPUs
(backbone, neck and head), a 1024 square (jitter, padding and test size), and 32 images per step
(8 GPUs x 4): 190900 iterations, lr 0.04, steps at epochs 15 and 20, a one-epoch warmup from
lr / 10.
"""

from pathlib import Path

from simpledet.config import load_config

SIZE = 1024
BATCH = 8 * 4
config = load_config(Path(__file__).parent / "retina_r50v1b_nasfpn_640_7@256_25epoch.py")
model = config.model
model.input.min_size, model.input.max_size = (SIZE,), SIZE
model.backbone.norm = model.neck.norm = model.head.norm = "syncbn"
config.data.scale_jitter.size = SIZE
epoch = 15272 * 16 // BATCH
config.train.batch_size, config.train.lr, config.train.lr_reference_batch = 4, 0.04, BATCH
config.train.max_iter, config.train.warmup_iters, config.train.steps = 25 * epoch, epoch, (15 * epoch, 20 * epoch)
