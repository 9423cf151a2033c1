"""TridentNet R101v2-C4 C5-128ROI, 2x, trained on train2017 + val2017 for test-dev.

SimpleDet: 42.8 box AP on COCO test-dev (models/tridentnet/README.md). As the 2x config, with
SimpleDet's config/tridentnet_r101v2c4_c5_addminival_2x.py changes: the training split reads
val2017 too (`data.train.extra_sets`), evaluation runs on test-dev2017 (image info only: `eval`
writes detections.json for the COCO evaluation server, and its own AP reads -1, no ground truth),
and 1000 proposals per branch at test time.
"""

from pathlib import Path

from simpledet.config import COCO_TESTDEV2017, COCO_VAL2017, DatasetConfig, load_config

config = load_config(Path(__file__).parent / "tridentnet_r101v2c4_c5_2x.py")
config.data.train.extra_sets = (COCO_VAL2017,)
config.data.val = DatasetConfig(*COCO_TESTDEV2017)
config.model.rpn.post_nms_top_n_test = 1000
