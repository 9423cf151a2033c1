"""Which images may share a batch without changing each other's detections.

A batch is padded to its largest image: an image on a smaller canvas than its batch-mates gains
padding that the network sees (the convolutions near its bottom and right edges, the RPN's anchors
there), so its detections differ from those it gets alone. Images on the same padded canvas are laid
out exactly as alone, so `predict`, the Python API's Predictor and `serve` batch only those.
"""

import functools
from collections.abc import Callable

import torch
from torch import Tensor


def canvas_key(preprocess, multi_scale: bool) -> Callable[[Tensor], object]:
    """The padded canvas an image gets alone, computed by the model's own resize on the meta
    device (shapes only, no pixels) and remembered per image size. Images on the same canvas are
    laid out in a batch exactly as alone; images on different canvases are not (the smaller one
    gains padding the network sees). Test-time augmentation resizes to several scales, so there
    only equal sizes share a batch.

    An image the resize rule cannot take (one side would shrink to nothing) raises ValueError."""

    @functools.lru_cache(maxsize=4096)
    def key_of_size(h: int, w: int) -> object:
        try:
            resized = preprocess.resize(torch.empty(3, h, w, device="meta"), preprocess.test_min_size)
        except (ZeroDivisionError, RuntimeError, ValueError):  # the meta kernels' ways of refusing size 0
            resized = None
        if resized is None or min(resized.shape[-2:]) < 1:
            raise ValueError(f"a {w}x{h} image is too elongated for this model: resized to its input size "
                             f"({preprocess.test_min_size} px short side, at most {preprocess.test_max_size} px "
                             "long side), one side would have no pixels")
        return (h, w) if multi_scale else tuple(int(v) for v in preprocess.canvas([resized]))

    return lambda image: key_of_size(int(image.shape[-2]), int(image.shape[-1]))
