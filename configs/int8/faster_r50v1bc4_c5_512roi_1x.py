"""Faster R-CNN R50v1b-C4 C5-512ROI 1x with INT8 quantisation-aware training (SimpleDet's config/int8).

SimpleDet (config/int8/README.md): 35.8 box AP on minival in int8 against 35.7 in fp32; 100 ms against
260 ms per 800x1200 image in TensorRT on a GTX 1080. The recipe fine-tunes the trained fp32 model with
fake-quantised weights and activations (`qat`, simpledet/engine/qat.py: symmetric 8-bit, weights per
tensor by their max, activations by an EMA of their max with decay 0.99, no delay) over epochs 6-12 of
the 1x schedule: iterations 45000-90000 at SimpleDet's 16 images, no warmup, the lr steps at 60000 and
80000 kept where they were. Start it from the fp32 run's weights: `train.init_from=PATH`. Images are
800 x 1200 at training and test (SimpleDet fixes the test size too, for TensorRT).
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.engine.qat import QATConfig

config = load_config(Path(__file__).parent / "../resnet_v1b/faster_r50v1bc4_c5_512roi_1x.py")
config.model.input.test_max_size = 1200
config.qat = QATConfig(delay=0, ema_decay=0.99, weight_per_channel=False, layers=("conv", "linear", "deconv"))
config.train.max_iter = 45000
config.train.steps = (15000, 35000)
config.train.warmup_iters = 0
