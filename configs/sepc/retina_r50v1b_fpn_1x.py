"""RetinaNet R50v1b-FPN with BatchNorm trained everywhere: the baseline of SimpleDet's SEPC folder, 1x.

SimpleDet zoo (models/sepc/README.md): 35.9 box AP on COCO val2017, 8x 2080Ti x 4 images, fp16,
8653 MB, 44 img/s. SimpleDet's config/sepc/retina_r50v1b_fpn_1x.py differs from
configs/resnet_v1b/retina_r50v1b_fpn_1x.py in: synchronised BN trained in the backbone (eps 1e-4,
momentum 0.997; only conv0 fixed) where that one freezes BN and the stem and stage 1; a BN on each
FPN output P3-P7 (models/NASFPN RetinaNetNeckWithBN); 4 images per GPU (32 in all) at lr 0.02 for
6 epochs of its flipped train2017 (43,974 iterations, steps at 30,000 and 40,000) where that one
runs 90,000 iterations of 16 at lr 0.01; fp16; every image padded to 800x1333. Head, anchors,
losses and decoding are the same: anchors 4 x stride x 2^(0, 1/3, 2/3) with ratios 0.5/1/2, IoU
0.5 / 0.4, focal loss (0.25, 2), smooth L1 (beta 0.11), 1000-iteration warmup from lr/3; test:
top 1000 per level above 0.05, NMS 0.5, 100 detections. The pretrained backbone is GluonCV's
resnet50_v1b (`model.backbone.pretrained=PATH`).
"""

from simpledet.config import Config, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.sepc import SEPCRetinaNetConfig
from simpledet.modeling.heads.retina_head import RetinaHeadConfig, retina_anchor_sizes
from simpledet.modeling.necks.sepc import SEPCNeckConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_255, IMAGENET_STD_255, InputConfig

config = Config(
    model=SEPCRetinaNetConfig(
        num_classes=80,
        # fixed_canvas: SimpleDet's PadParam pads every image to 800x1333
        input=InputConfig(min_size=(800,), max_size=1333, pixel_scale=255.0, mean=IMAGENET_MEAN_255,
                          std=IMAGENET_STD_255, fixed_canvas=True),
        # SimpleDet fixes conv0 only; freeze_at=1 also keeps the stem BN's affine fixed
        backbone=ResNetConfig(depth=50, variant="v1b", norm="syncbn", freeze_at=1, out_features=("c3", "c4", "c5")),
        neck=SEPCNeckConfig(out_channels=256, fpn_norm="syncbn", pconv_num=0, pconv_deform=False,
                            integrated_norm=None),
        head=RetinaHeadConfig(in_features=("p3", "p4", "p5", "p6", "p7"),
                              anchor_sizes=retina_anchor_sizes((8, 16, 32, 64, 128), octave_base=4.0),
                              aspect_ratios=(0.5, 1.0, 2.0), num_convs=4, prior_prob=0.01,
                              fg_iou=0.5, bg_iou=0.4, focal_alpha=0.25, focal_gamma=2.0,
                              box_loss="smooth_l1", box_loss_beta=0.11, box_weights=(1.0, 1.0, 1.0, 1.0),
                              pre_nms_top_n=1000, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),
        bn_eps=1e-4, bn_momentum=0.003,
    ),
    data=coco2017(num_workers=4, flip=True),
    # 8 GPUs x 4 images; SimpleDet: lr 0.005 / 8 per image, 6 epochs of 2 x 117,266 images
    train=TrainConfig(max_iter=43974, batch_size=4, lr=0.02, lr_reference_batch=32, momentum=0.9,
                      weight_decay=1e-4, warmup_iters=1000, warmup_factor=1.0 / 3, steps=(30000, 40000),
                      amp=True, amp_dtype="float16", checkpoint_every=5000),
)
