"""torchvision's fasterrcnn_resnet50_fpn, reproduced exactly for inference.

Load a torchvision checkpoint with `--weights` (or convert it once with `simpledet convert
torchvision`). torchvision's layout has 91 classes (COCO category ids, background at 0), so
labels are COCO category ids directly: data.contiguous_labels is False.
"""

from simpledet.config import Config, TestConfig, TrainConfig, coco2017
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.detectors.faster_rcnn import FasterRCNNConfig
from simpledet.modeling.heads.box_head import MLPHeadConfig
from simpledet.modeling.heads.roi_heads import RoIHeadsConfig
from simpledet.modeling.heads.rpn import RPNConfig
from simpledet.modeling.necks.fpn import FPNConfig
from simpledet.modeling.preprocess import IMAGENET_MEAN_01, IMAGENET_STD_01, InputConfig

config = Config(
    model=FasterRCNNConfig(
        num_classes=90,
        # ImageNet mean / std on [0, 1] RGB input, short side 800, long side <= 1333
        input=InputConfig(min_size=(800,), max_size=1333, mean=IMAGENET_MEAN_01, std=IMAGENET_STD_01,
                          pixel_scale=1.0),
        # torchvision's ResNet-50 is the v1b layout (stride in the 3x3 conv); 3 trainable stages
        # fuse_frozen_bn=False: torchvision's arithmetic exactly, for bit-level parity
        backbone=ResNetConfig(depth=50, variant="v1b", norm="frozen_bn", freeze_at=2, fuse_frozen_bn=False),
        neck=FPNConfig(out_channels=256),
        rpn=RPNConfig(pre_nms_top_n_train=2000, pre_nms_top_n_test=1000,
                      post_nms_top_n_train=2000, post_nms_top_n_test=1000, nms_thresh=0.7,
                      min_size=1e-3, allowed_border=None),
        roi_heads=RoIHeadsConfig(box_head=MLPHeadConfig(fc_dim=1024, num_fc=2, fc_bias=True),
                                 pooler_resolution=7, pooler_sampling_ratio=2, batch_size_per_image=512,
                                 positive_fraction=0.25, score_thresh=0.05, nms_thresh=0.5,
                                 detections_per_img=100, box_loss_beta=1.0 / 9),
    ),
    data=coco2017(contiguous_labels=False),
    train=TrainConfig(max_iter=90000, steps=(60000, 80000), lr=0.02, lr_reference_batch=16,
                      warmup_iters=1000, warmup_factor=0.001, channels_last=False),
    # NCHW and unfolded frozen BN: torchvision's own arithmetic, bit for bit
    test=TestConfig(channels_last=False),
)
