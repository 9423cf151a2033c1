"""NAS-FPN RetinaNet, ResNet-50 v1b, 640 x 640 input, 7 cells at width 256, 25 epochs.

SimpleDet zoo (models/NASFPN/README.md): 40.1 box AP on COCO test-dev; 8x 1080Ti, 8 images per
GPU, fp16, 7.8 GB and 66 img/s in training. Settings are SimpleDet's
(config/NASFPN/retina_r50v1b_nasfpn_640_7@256_25epoch.py):
- model: trainable BN everywhere (SimpleDet's localbn: backbone, every cell node, and the head,
  whose shared convs have a BN per level), only the stem frozen; NAS-FPN neck of 7 cells at 256
  channels; 4-conv 256-channel head; anchors 4 x stride x 2^(0, 1/3, 2/3), ratios 0.5 / 1 / 2;
  foreground IoU >= 0.5, background < 0.5 (no ignored band), focal loss (0.25, 2), smooth L1
  (beta 0.11); test: top 1000 per level above 0.05, NMS 0.5, 100 detections.
- input: SimpleDet's mean / std on 0-255 RGB. Training: large-scale jitter (`data.scale_jitter`:
  longer side to 640 x U(0.8, 1.2), a random 640 x 640 window) and mirrored copies, then padded
  to 640 x 640 without another resize (`fixed_canvas`, `train_resize=False`). Test: longer side
  to 640, padded to a multiple of 128 (SimpleDet pads every test image to the full square; only
  the global-pool merges of the cells see the difference).
- schedule: 25 epochs of train2017 + val2017 with mirrored copies (SimpleDet's 15272 iterations of
  16 images per epoch) at 64 images per step (8 GPUs x 8): 95450 iterations, lr 0.08 (0.01 per
  8 images), steps at epochs 15 and 20, linear warmup over the first epoch from lr / 10;
  momentum 0.9, weight decay 1e-4. Evaluation runs on test-dev2017 (image info only: `eval`
  writes detections.json for the COCO server; its own AP reads -1).
"""

from simpledet.config import COCO_TESTDEV2017, COCO_VAL2017, Config, DatasetConfig, TrainConfig, coco2017
from simpledet.data.scale_jitter import ScaleJitterConfig
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.retinanet import RetinaNetConfig
from simpledet.modeling.heads.retina_head import retina_anchor_sizes
from simpledet.modeling.heads.retina_head_bn import RetinaHeadWithNormConfig
from simpledet.modeling.necks.nasfpn import NASFPNConfig
from simpledet.modeling.preprocess import InputConfig

SIZE = 640
IMAGES_PER_EPOCH = 15272 * 16  # SimpleDet's count: train2017 + val2017 with annotations, mirrored
BATCH = 8 * 8  # 8 GPUs x 8 images


def iterations(epochs: float, batch: int = BATCH) -> int:
    return int(IMAGES_PER_EPOCH * epochs) // batch


config = Config(
    model=RetinaNetConfig(
        num_classes=80,
        input=InputConfig(min_size=(SIZE,), max_size=SIZE, pixel_scale=255.0, mean=(123.688, 116.779, 103.939),
                          std=(58.393, 57.12, 57.375), size_divisible=128, fixed_canvas=True, train_resize=False),
        backbone=ResNetConfig(depth=50, variant="v1b", norm="bn", freeze_at=1, out_features=("c3", "c4", "c5")),
        neck=NASFPNConfig(num_stages=7, channels=256, norm="bn", stem_kernel=1),
        head=RetinaHeadWithNormConfig(in_features=("p3", "p4", "p5", "p6", "p7"),
                                      anchor_sizes=retina_anchor_sizes((8, 16, 32, 64, 128), octave_base=4.0),
                                      aspect_ratios=(0.5, 1.0, 2.0), num_convs=4, conv_channels=256, norm="bn",
                                      prior_prob=0.01, fg_iou=0.5, bg_iou=0.5, focal_alpha=0.25, focal_gamma=2.0,
                                      box_loss="smooth_l1", box_loss_beta=0.11, box_weights=(1.0, 1.0, 1.0, 1.0),
                                      pre_nms_top_n=1000, score_thresh=0.05, nms_thresh=0.5,
                                      detections_per_img=100),
    ),
    data=coco2017(num_workers=4, flip=True, scale_jitter=ScaleJitterConfig(size=SIZE, scale_min=0.8, scale_max=1.2)),
    train=TrainConfig(max_iter=iterations(25), batch_size=8, lr=0.08, lr_reference_batch=BATCH, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=iterations(1), warmup_factor=0.1,
                      steps=(iterations(15), iterations(20)), checkpoint_every=5000),
)
config.data.train.extra_sets = (COCO_VAL2017,)
config.data.val = DatasetConfig(*COCO_TESTDEV2017)
