"""Test-time augmentation: the detector run at several input scales and mirrored, the detections
merged by per-class NMS (or soft-NMS), as SimpleDet's multi-scale testing does."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from simpledet.engine.precision import autocast, autocast_dtype
from simpledet.modeling.nms import class_nms


def augmented_inference(model: nn.Module, images: list[Tensor], scales: tuple[int, ...], flip: bool,
                        max_size: int | None = None, nms_thresh: float = 0.5, nms_method: str = "nms",
                        detections_per_img: int = 100) -> list[dict]:
    pre = model.preprocess
    saved = (pre.test_min_size, pre.test_max_size)
    runs: list[list[dict]] = []
    try:
        for scale in scales or (pre.test_min_size,):
            pre.test_min_size = scale
            if max_size is not None:
                pre.test_max_size = max_size
            for mirrored in (False, True) if flip else (False,):
                outputs = model([img.flip(-1) for img in images] if mirrored else images)
                if mirrored:
                    for out, img in zip(outputs, images):
                        width = img.shape[-1]
                        b = out["boxes"]
                        out["boxes"] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
                runs.append(outputs)
    finally:
        pre.test_min_size, pre.test_max_size = saved

    merged = []
    for per_image in zip(*runs):
        if any("masks" in out for out in per_image):
            raise ValueError("test-time augmentation merges boxes only; mask models are not supported")
        boxes = torch.cat([out["boxes"] for out in per_image])
        scores = torch.cat([out["scores"] for out in per_image])
        labels = torch.cat([out["labels"] for out in per_image])
        keep, kept_scores = class_nms(boxes, scores, labels, nms_thresh, detections_per_img, nms_method)
        merged.append({"boxes": boxes[keep], "scores": kept_scores, "labels": labels[keep]})
    return merged


def inference_fn(model: nn.Module, cfg) -> Callable[[list[Tensor]], list[dict]]:
    """The model itself, or the model under the config's test-time augmentation (cfg.test), run
    in the precision cfg.test asks for (outputs always fp32)."""
    test = cfg.test
    if not test.scales and not test.flip:
        run = model
    else:
        def run(images):
            return augmented_inference(model, images, tuple(test.scales), test.flip, test.max_size,
                                       test.nms_thresh, test.nms_method, test.detections_per_img)
    device = next(model.parameters()).device
    dtype = autocast_dtype(test.amp, test.amp_dtype, device, key="test.amp_dtype")
    if dtype is None:
        return run

    def run_autocast(images):
        with autocast(device, dtype):
            outputs = run(images)
        return [{k: v.float() if v.is_floating_point() else v for k, v in out.items()} for out in outputs]
    return run_autocast
