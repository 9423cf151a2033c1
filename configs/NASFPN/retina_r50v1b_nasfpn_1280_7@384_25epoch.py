"""NAS-FPN RetinaNet, ResNet-50 v1b, 1280 x 1280 input, 7 cells at width 384, 25 epochs.

SimpleDet zoo (models/NASFPN/README.md): 45.3 box AP on COCO test-dev; 8x 1080Ti, 2 images per
GPU, fp16, 8.9 GB and 10 img/s in training. As the 640 config, with SimpleDet's changes
(config/NASFPN/retina_r50v1b_nasfpn_1280_7@384_25epoch.py): synchronised BN across the GPUs,
cells 384 channels wide (the head stays at 256), a 1280 square, and 16 images per step (8 GPUs x
2): 381800 iterations, lr 0.02, steps at epochs 15 and 20, a one-epoch warmup from lr / 10.
SimpleDet also averages the focal loss's foreground count over the GPUs (`sync_loss`); ours
divides each process's loss by its own count.
"""

from pathlib import Path

from simpledet.config import load_config

SIZE = 1280
BATCH = 8 * 2
config = load_config(Path(__file__).parent / "retina_r50v1b_nasfpn_640_7@256_25epoch.py")
model = config.model
model.input.min_size, model.input.max_size = (SIZE,), SIZE
model.backbone.norm = model.neck.norm = model.head.norm = "syncbn"
model.neck.channels = 384
config.data.scale_jitter.size = SIZE
epoch = 15272 * 16 // BATCH
config.train.batch_size, config.train.lr, config.train.lr_reference_batch = 2, 0.02, BATCH
config.train.max_iter, config.train.warmup_iters, config.train.steps = 25 * epoch, epoch, (15 * epoch, 20 * epoch)
