"""Faster R-CNN R50v2-C4 C5-256ROI, multi-scale training and testing, 2x.

SimpleDet's config/faster_r50v2c4_c5_256roi_multiscale_2x.py (no published figure). As the 1x v2 C4
config, with: training images resized so that the short side is one of 600, 800, 1000, 1200 drawn at
random (long side at most 2000), then cut to an 800 x 1200 window at the centre (`data.rand_resize_crop`,
SimpleDet's RandResize2DImageBbox + RandCrop2DImageBbox); the 2x schedule; testing at the four short
sides (long side 2000) with detections merged by linear soft-NMS at 0.5 (`test`), score threshold 0.001.
"""

from pathlib import Path

from simpledet.config import load_config
from simpledet.data.rand_resize_crop import RandResizeCropConfig

config = load_config(Path(__file__).parent / "faster_r50v2c4_c5_256roi_1x.py")
config.data.rand_resize_crop = RandResizeCropConfig(short_sides=(600, 800, 1000, 1200),
                                                    long_sides=(2000, 2000, 2000, 2000),
                                                    crop_short=800, crop_long=1200, mode="center")
config.model.input.train_resize = False  # the images come at their size already; the model pads them
config.train.max_iter = 180000
config.train.steps = (120000, 160000)
config.model.roi_heads.score_thresh = 0.001
config.test.scales = (600, 800, 1000, 1200)
config.test.max_size = 2000
config.test.nms_method = "soft_linear"
config.test.nms_thresh = 0.5
