"""Faster R-CNN, EfficientNet-B5 + FPN, BN, from scratch at 400x600, 9x: 54 epochs.

SimpleDet zoo (models/efficientnet): 37.9 box AP on COCO minival, 8 GPUs x 8 images, fp16,
75 img/s on 8x 1080Ti. The 6x config with SimpleDet's 9x schedule
(config/efficientnet/efficientnet_b5_fpn_bn_scratch_400_9x.py): 54 epochs of the flipped train
set, the rate divided by 10 at 70k and 30k iterations of 16 images before the end.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "efficientnet_b5_fpn_bn_scratch_400_6x.py")
ITERS_16 = (82783 + 35504) * 2 // 16 * 54  # iterations of 16 images over the flipped set
config.train.max_iter = ITERS_16 * 16 // 64  # iterations of 64 images (8 GPUs x 8)
config.train.steps = ((ITERS_16 - 70000) * 16 // 64, (ITERS_16 - 30000) * 16 // 64)
