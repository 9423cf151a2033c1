"""TridentNet, ResNet-50 v1b C4, C5-128ROI head, SyncBN, trained from scratch, 2x.

SimpleDet's config/scratch/tridentnet_r50v1bc4_c5_syncbn_scratch_2x.py (its zoo publishes no AP for
it): TridentNet R50v1b-C4 with nothing pretrained and every norm a trainable SyncBN: the backbone
(nothing frozen), the C5 head and the RPN's 3x3 conv (conv with bias -> norm -> ReLU); the branches
share their convolutions but each has norms of its own in the trident blocks (branch_bn_shared =
False). 8 GPUs x 3 images, mixed precision, SGD at 0.03 for 24 images, warmup from 0 over 500
iterations, gradients clipped at 5; 12 epochs of the flipped train set (~118k iterations of 24
images), the rate divided by 10 at 80k and 107k (120k and 160k of 16 images). Detections kept from
score 0.001, as SimpleDet's TestParam.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parents[1] / "resnet_v1b" / "tridentnet_r50v1bc4_c5_1x.py")
NORM = "syncbn"
model = config.model
model.backbone.norm = NORM
model.backbone.freeze_at = 0
model.backbone.pretrained = None
model.trident.shared_norms = False
model.rpn.conv_norm = NORM
model.roi_heads.box_head.norm = NORM
model.roi_heads.score_thresh = 0.001
IMAGES = 24  # 8 GPUs x 3
config.train.batch_size = 3
config.train.lr = 0.01 / 8 * IMAGES
config.train.lr_reference_batch = IMAGES
config.train.warmup_iters = 500
config.train.warmup_factor = 0.0
config.train.clip_grad_norm = 5.0
config.train.amp = True
config.train.max_iter = 118287 * 2 // IMAGES * 12
config.train.steps = (120000 * 16 // IMAGES, 160000 * 16 // IMAGES)
