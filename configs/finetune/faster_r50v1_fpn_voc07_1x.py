"""Faster R-CNN R50v1-FPN on PASCAL VOC: trained on VOC 2007 + 2012 trainval from the ImageNet
backbone, tested on VOC 2007 test (SimpleDet's config/finetune/faster_r50v1_fpn_voc07_1x.py).

As faster_r50v1_fpn_1x, with 20 classes and per-class box regression, images resized to 608 on
the short side (at most 992 on the long), and SimpleDet's schedule: 6 epochs of the flipped
trainval lists (2 x 16551 images: 12413 iterations of 16 images), lr 0.02 for 16 images with one
step at 10000 iterations and a 100-iteration warmup from lr / 3. VOC is read in its own layout
(data.train.format=voc; VOC 2012 through data.train.extra_sets). Score it with VOC's mAP@0.5:
`simpledet eval CONFIG --weights W --metric voc07` (11-point, as VOC 2007's devkit) or `--metric
voc`. SimpleDet publishes no figure for it.
"""

from pathlib import Path

from simpledet.config import DatasetConfig, load_config

config = load_config(Path(__file__).parents[1] / "faster_r50v1_fpn_1x.py")
config.model.num_classes = 20
config.model.input.min_size = (608,)
config.model.input.max_size = 992
config.data.train = DatasetConfig("data/VOCdevkit/VOC2007", format="voc", split="trainval",
                                  extra_sets=(("data/VOCdevkit/VOC2012", "trainval"),))
config.data.val = DatasetConfig("data/VOCdevkit/VOC2007", format="voc", split="test")
config.train.max_iter = 12413
config.train.steps = (10000,)
config.train.warmup_iters = 100
config.train.warmup_factor = 1.0 / 3
