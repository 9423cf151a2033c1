"""RepPoints, ResNet-101 v1b-DCN + GroupNorm FPN P3-P7, moment transform, 2x, multi-scale training
and testing.

SimpleDet zoo: 46.4 box AP on COCO minival (SimpleDet's own figure; the paper has no such row).
SimpleDet's config/RepPoints/reppoints_moment_dcn_r101v1b_fpn_multiscale_2x.py: GluonCV's v1b
ResNet-101 (ImageNet mean / std on 0-255 RGB) with the 3x3 conv of the last 3 blocks of conv4_x
deformable (4 deformable groups, no modulation); each training image resized to a short side drawn
from 600 / 800 / 1000 / 1200 (long side at most 2000); 180k iterations, steps at 120k and 160k,
2000-iteration warmup from lr/3, gradients clipped at 35 (per element in MXNet, the global norm
here); test at the same four short sides (long side 2000), detections merged by per-class NMS 0.5.

Not reproduced: SimpleDet then crops each training image to at most 800 x 1333 around a random
object (RandCrop2DImageBbox, "center"); we train on the whole resized image.
"""

from pathlib import Path

from simpledet.config import TestConfig, load_config
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255

MULTISCALE = (600, 800, 1000, 1200)

config = load_config(Path(__file__).parent / "reppoints_moment_r50v1_fpn_1x.py")
config.model.backbone.depth = 101
config.model.backbone.variant = "v1b"
config.model.backbone.dcn_blocks = (0, 0, 3, 0)
config.model.backbone.dcn_deformable_groups = 4
config.model.backbone.dcn_modulated = False
config.model.input.mean = IMAGENET_MEAN_255
config.model.input.std = IMAGENET_STD_255
config.model.input.min_size = MULTISCALE
config.model.input.max_size = 2000
config.model.input.test_min_size = 800
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
config.train.warmup_iters = 2000
config.train.clip_grad_norm = 35.0
config.test = TestConfig(scales=MULTISCALE, max_size=2000, flip=False, nms_thresh=0.5, detections_per_img=100)
