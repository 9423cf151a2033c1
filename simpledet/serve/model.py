"""The model behind `simpledet serve`: decoded images in, each image's detections out, rounded and
named exactly as `predict` writes them (evaluator.detections_to_coco, 3 decimals for boxes, 5 for
scores).

Two kinds: a checkpoint run by the eager Predictor, and an exported ONNX file run by
simpledet.deploy.onnx_runtime. Both give `batch_key(image)`: images with equal keys become equal
inputs when batched together (same padded canvas), so a batch gives each image what it alone gets.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from simpledet.engine.canvas import canvas_key
from simpledet.errors import UserError

BOX_DECIMALS, SCORE_DECIMALS = 3, 5  # predict's rounding


@dataclass
class ImageDetections:
    """One image's detections as the service returns them, and their scores before rounding, which
    `?score_thresh=` compares (as the model compares its own threshold: kept if above)."""

    records: list[dict]  # {"bbox": [x, y, w, h], "score", "category_id", "category_name"[, "segmentation"]}
    raw_scores: list[float]

    def above(self, score_thresh: float | None) -> list[dict]:
        if score_thresh is None:
            return self.records
        return [r for r, s in zip(self.records, self.raw_scores) if s > score_thresh]


def response_detections(det: dict) -> ImageDetections:
    """A model output -> the service's records. `det` holds boxes (x1y1x2y2), labels, scores
    [, masks], and the per-detection `category_ids` and `names` that the Predictor (given the
    checkpoint's categories) and the OnnxDetector add; without them a label is its own category id
    and a detection is named by it, as `predict` writes and `predict --vis` labels it."""
    from simpledet.engine.evaluator import detections_to_coco

    labels = det["labels"].tolist()
    category_ids = list(det.get("category_ids", labels))
    names = det.get("names") or [str(c) for c in category_ids]
    coco = detections_to_coco([det], [{}], dict(zip(labels, category_ids)), box_decimals=BOX_DECIMALS,
                              score_decimals=SCORE_DECIMALS)
    records = []
    for record, name in zip(coco, names):
        out = {"bbox": record["bbox"], "score": record["score"], "category_id": record["category_id"],
               "category_name": name}
        if "segmentation" in record:
            out["segmentation"] = record["segmentation"]
        records.append(out)
    return ImageDetections(records, det["scores"].double().tolist())


class ServedModel:
    """`model(images) -> [ImageDetections]` for float CHW [0, 1] images; `batch_key(image)` says
    which images may share a batch; `description` and `score_thresh` (the model's own threshold,
    None if unknown) are shown by /healthz."""

    def __init__(self, detect: Callable[[list[Tensor]], list[dict]], batch_key: Callable[[Tensor], object],
                 description: str, score_thresh: float | None) -> None:
        self._detect = detect
        self.batch_key = batch_key
        self.description = description
        self.score_thresh = score_thresh

    def __call__(self, images: list[Tensor]) -> list[ImageDetections]:
        return [response_detections(det) for det in self._detect(images)]


def load_served_model(weights: str | Path, config: str | None = None, overrides: Sequence[str] = (),
                      device: str | None = None) -> ServedModel:
    """A checkpoint (with CONFIG, or our own checkpoint's saved config) or an `.onnx` file."""
    weights = Path(weights)
    if not weights.is_file():
        raise UserError(f"weights file not found: {weights}")
    if weights.suffix == ".onnx":
        if config is not None or overrides:
            raise UserError(f"{weights}: an ONNX file carries its own settings; CONFIG and --set apply to checkpoints")
        return _onnx_model(weights)
    return _eager_model(weights, config, list(overrides), device)


def _eager_model(weights: Path, config: str | None, overrides: list[str], device: str | None) -> ServedModel:
    from simpledet.api import Predictor
    from simpledet.cli.checkpoint_info import checkpoint_categories, config_of_checkpoint
    from simpledet.config import load_config

    cfg = load_config(config, overrides) if config is not None else config_of_checkpoint(weights, overrides)
    # the categories and label map as `predict` takes them from the checkpoint
    categories = checkpoint_categories(weights)
    names, label_to_cat = None, None
    if categories is not None and cfg.data.contiguous_labels:
        names = categories[0]
        label_to_cat = {i + 1: cat for i, cat in enumerate(categories[1])}
    predictor = Predictor(cfg, weights, device=device or cfg.train.device, category_names=names,
                          label_to_category_id=label_to_cat)
    return ServedModel(
        detect=lambda images: predictor(list(images), batch_size=len(images)),
        batch_key=canvas_key(predictor.model.preprocess, multi_scale=bool(cfg.test.scales)),
        description=f"{weights.name} ({type(cfg.model).__name__}, {predictor.device})",  # no server paths
        score_thresh=float(cfg.model.final_head.score_thresh))


def _onnx_model(path: Path) -> ServedModel:
    try:
        from simpledet.deploy.onnx_runtime import OnnxDetector
    except ImportError as e:
        raise UserError(f"{path}: serving an ONNX file needs simpledet's deploy support ({e})") from None
    detector = OnnxDetector(path)
    return ServedModel(
        # the exported graph takes one image per call: a batch only saves the waiting between calls
        detect=lambda images: [detector(image) for image in images],
        batch_key=lambda image: None, description=f"{path.name} (ONNX)", score_thresh=None)
