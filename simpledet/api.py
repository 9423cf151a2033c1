"""The small Python API: build a model from a config, and a Predictor for images on disk."""

import logging
from pathlib import Path

import torch
from torch import nn

from simpledet.config import Config
from simpledet.engine.checkpoint import load_weights

log = logging.getLogger(__name__)


def build_model(cfg: Config, load_pretrained: bool = True) -> nn.Module:
    """The detector described by `cfg.model`: random weights, and the backbone's ImageNet weights
    when `model.backbone.pretrained` names a file (SimpleDet's MXNet .params, a torchvision ResNet,
    or one of ours) in every module the detector says such a file initialises (a C4 detector's
    stage 5, which lives in its RoI head, too)."""
    model = cfg.model.build()
    path = cfg.model.backbone.pretrained
    if load_pretrained and path:
        from simpledet.weights.pretrained import load_pretrained_weights

        for report in load_pretrained_weights(model.pretrained_modules(), path):
            log.info("%s: %s", path, report.summary())
    if cfg.qat is not None:  # after the pretrained weights, which are float
        from simpledet.engine.qat import prepare_qat

        prepare_qat(model, cfg.qat)
    return model


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Predictor:
    """Runs a trained detector on images: `Predictor(cfg, weights)(image_or_path)`.

    Accepts file paths, PIL images, or float CHW tensors in [0, 1]; returns one dict per image
    with boxes (x1y1x2y2, original pixels), labels, scores, and category ids / names when the
    label map is known.
    """

    def __init__(self, cfg: Config, weights: str | Path | None = None, device: str = "auto",
                 category_names: list[str] | None = None, label_to_category_id: dict[int, int] | None = None) -> None:
        from simpledet.engine.tta import inference_fn

        self.cfg = cfg
        self.device = resolve_device(device)
        self.model = build_model(cfg, load_pretrained=weights is None)
        if weights is not None:
            load_weights(self.model, weights)
        self.model.eval().to(self.device)
        if cfg.test.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.detect = inference_fn(self.model, cfg)
        self.category_names = category_names
        self.label_to_category_id = label_to_category_id

    @torch.inference_mode()
    def __call__(self, images, batch_size: int = 1) -> list[dict]:
        """One dict per image. Up to `batch_size` images share a model call, and only images on the
        same padded canvas (engine/canvas.py), so that each gets the detections it gets alone."""
        from simpledet.data.image_io import to_tensor_image

        single = not isinstance(images, (list, tuple))
        items = [to_tensor_image(x) for x in ([images] if single else images)]
        outputs: list[dict | None] = [None] * len(items)
        for batch in self._canvas_batches(items, batch_size):
            detections = self.detect([items[i].to(self.device) for i in batch])
            for i, det in zip(batch, detections):
                outputs[i] = self._named({k: v.cpu() for k, v in det.items()})
        return outputs[0] if single else outputs

    def _canvas_batches(self, items: list[torch.Tensor], batch_size: int) -> list[list[int]]:
        """Indices of `items` in batches of at most batch_size that share a padded canvas."""
        if batch_size <= 1 or len(items) <= 1:
            return [[i] for i in range(len(items))]
        from simpledet.engine.canvas import canvas_key

        key = canvas_key(self.model.preprocess, multi_scale=bool(self.cfg.test.scales))
        groups: dict[object, list[int]] = {}
        for i, image in enumerate(items):
            try:
                groups.setdefault(key(image), []).append(i)
            except ValueError:  # a size the resize cannot take: alone, so the model names it
                groups[("alone", i)] = [i]
        return [group[start:start + batch_size] for group in groups.values()
                for start in range(0, len(group), batch_size)]

    def _named(self, det: dict) -> dict:
        labels = det["labels"].tolist()
        if self.label_to_category_id is not None:
            det["category_ids"] = [self.label_to_category_id.get(lab, lab) for lab in labels]
        if self.category_names is not None:
            det["names"] = [self.category_names[lab - 1] if 0 < lab <= len(self.category_names)
                            else str(lab) for lab in labels]
        return det
