"""TridentNet R101v2-C4 C5-128ROI, multi-scale, train2017 + val2017, 3x, mixed precision.

SimpleDet: 48.4 box AP on COCO test-dev ("TridentNet*, 3x", models/tridentnet/README.md). As the
addminival 2x config, with SimpleDet's config/tridentnet_r101v2c4_c5_multiscale_addminival_3x_fp16.py
changes:
- training images resized to a short side drawn from 600, 800, 1000, 1200 (long side at most 2000) and
  cut to an 800 x 1200 window centred on a random ground-truth box (`data.rand_resize_crop`); valid
  ranges (0, 150), (50, 270), (150, inf), measured on the network's input (SimpleDet's
  valid_ranges_on_origin = False: in training the crops are that input; at test the ranges are read in
  original-image pixels);
- each branch with BatchNorms of its own (`trident.shared_norms = False`) and deformable 3x3 convs in the
  last three trident blocks (`trident.deform_blocks = 3`); synchronised, trained BN everywhere but the
  RPN head, nothing frozen; 3 images per GPU, fp16, 3x (steps at 180k and 240k of 16-image iterations);
- testing at short sides 600, 800, 1000, 1200 (long side 2000), merged by linear soft-NMS at 0.5.
A float checkpoint with shared BNs initialises every branch's copy from the shared one (SimpleDet's
process_weight): `simpledet convert simpledet` does so for SimpleDet's files.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.data.rand_resize_crop import RandResizeCropConfig

config = load_config(Path(__file__).parent / "tridentnet_r101v2c4_c5_addminival_2x.py")
config.data.rand_resize_crop = RandResizeCropConfig(short_sides=(600, 800, 1000, 1200),
                                                    long_sides=(2000, 2000, 2000, 2000),
                                                    crop_short=800, crop_long=1200, mode="center")
config.model.input.train_resize = False  # the crops come at their size; the model pads them
config.model.trident.valid_ranges = ((0.0, 150.0), (50.0, 270.0), (150.0, -1.0))
config.model.trident.shared_norms = False
config.model.trident.deform_blocks = 3
config.model.backbone.norm = "syncbn"
config.model.backbone.freeze_at = 0
config.model.roi_heads.box_head.norm = "syncbn"
config.train.batch_size = 3
config.train.amp = True
config.train.max_iter = 270000
config.train.steps = (180000, 240000)
config.test.scales = (600, 800, 1000, 1200)
config.test.max_size = 2000
config.test.nms_method = "soft_linear"
config.test.nms_thresh = 0.5
