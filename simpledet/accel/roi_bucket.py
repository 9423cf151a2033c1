"""A convolutional RoI head run on its RoIs padded to a multiple of a bucket size.

With cuDNN's benchmark mode (train.cudnn_benchmark, on by default) cuDNN times its algorithms for
every new input shape, and a RoI head's batch is its number of RoIs. That number changes every
step for the mask head (the foreground RoIs), for TridentNet's box head (proposals filtered by
scale) and at inference (the detections): every step would pay a new search, which costs more
than the step. Padded with zero RoIs to a multiple of ROI_BUCKET, the head sees a handful of batch
sizes and each is searched once. The padding rows are cut off the output, so values and gradients
are those of the unpadded batch.

`run_bucketed(head, rois)` has the contract of the R-CNN heads' `run_head` argument
(simpledet.modeling.heads.roi_heads.run_head_directly): the detector configs pass it."""

import weakref

import torch
from torch import Tensor, nn

ROI_BUCKET = 32
_bucketable: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


def bucketable(head: nn.Module) -> bool:
    """Whether padding helps and is harmless: the head has convolutions (cuDNN searches; linear
    layers do not) and no BatchNorm, whose batch statistics the zero rows would change. Decided
    once per head."""
    if head not in _bucketable:
        convs = any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in head.modules())
        batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules())
        _bucketable[head] = convs and not batch_norm
    return _bucketable[head]


def run_bucketed(head: nn.Module, rois: Tensor, search: bool | None = None) -> Tensor:
    """head(rois), on rois padded to a multiple of ROI_BUCKET when the head is bucketable and cuDNN
    searches (`search`; None: a CUDA input with torch.backends.cudnn.benchmark on)."""
    if search is None:
        search = rois.is_cuda and torch.backends.cudnn.enabled and torch.backends.cudnn.benchmark
    count = rois.shape[0]
    if torch.compiler.is_compiling():
        # a traced graph knows the RoI count only at run time, and it may be zero, where a
        # convolution's checks of an empty batch cannot be decided: one zero RoI more makes it
        # non-empty (inference only: nothing is trained on the extra row)
        return head(torch.cat([rois, rois.new_zeros((1, *rois.shape[1:]))]))[:count]
    if not search or count % ROI_BUCKET == 0 or not bucketable(head):
        return head(rois)
    padding = rois.new_zeros((ROI_BUCKET - count % ROI_BUCKET, *rois.shape[1:]))
    return head(torch.cat([rois, padding]))[:count]
