"""Faster R-CNN R50v1-FPN fine-tuned to PASCAL VOC from a COCO Mask R-CNN
(SimpleDet's config/finetune/faster_r50v1_fpn_voc07_finetune_1x.py).

As faster_r50v1_fpn_voc07_1x, but the whole detector starts from COCO's mask_r50v1_fpn_1x
(`train.init_from`): every tensor whose name and shape match is copied, so the backbone, FPN, RPN
and the box head's fully-connected layers carry over, while the class-specific layers (21-way
classifier, 21 x 4 box regression) are made afresh and the mask branch has no place in this model
(the log lists both). Make the source once with `simpledet convert simpledet
mask_r50v1_fpn_1x-0012.params configs/mask_r50v1_fpn_1x.py pretrain_model/r50v1-maskrcnn-coco.safetensors`
(or a COCO run of ours). SimpleDet's fine-tuning schedule: lr a tenth of the from-ImageNet run's
(0.002 for 16 images), constant, no warmup, 3 epochs of the flipped lists (6206 iterations of 16
images). SimpleDet publishes no figure for it.
"""

from pathlib import Path

from simpledet.config import load_config

config = load_config(Path(__file__).parent / "faster_r50v1_fpn_voc07_1x.py")
config.model.backbone.pretrained = None  # init_from covers the whole detector
config.train.init_from = "pretrain_model/r50v1-maskrcnn-coco.safetensors"
config.train.lr = config.train.lr / 10
config.train.max_iter = 6206
config.train.steps = ()
config.train.warmup_iters = 0
