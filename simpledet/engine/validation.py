"""A model scored on a dataset: detections for every image, then the 12 COCO box stats. One
function for `simpledet eval` and for evaluation during training (train.eval_every), so both
score the same way: the config's test-time settings (engine/tta.py), its evaluation batch size,
and under torchrun the images sharded across ranks and gathered on rank 0
(engine/inference.py)."""

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from simpledet.config import Config
from simpledet.data.coco import CocoDetection
from simpledet.engine.crowdhuman_metrics import evaluate_crowdhuman
from simpledet.engine.evaluator import EvalResult, evaluate_detections
from simpledet.engine.inference import run_on_dataset
from simpledet.engine.labels import model_label_to_category_id
from simpledet.engine.proposal_recall import evaluate_proposals
from simpledet.engine.tta import inference_fn


@dataclass
class ModelEvaluation(EvalResult):
    """The box stats of a model, with the detections (COCO results records) they score."""

    detections: list[dict] = field(default_factory=list)


def evaluate_model(model: nn.Module, cfg: Config, dataset: CocoDetection, device: torch.device,
                   show_progress: bool = True, model_categories: list[str] | None = None) -> ModelEvaluation | None:
    """Runs `model` (in eval mode; the caller puts it back in training mode if it trains) over
    `dataset` and scores its detections against the dataset's ground truth. `model_categories`:
    the class names of the model's labels 1..K, matched to the dataset's by name when its order
    differs. Under torchrun every rank must call it; rank 0 gets the result, the other ranks None."""
    label_to_category_id = model_label_to_category_id(cfg, dataset, model_categories)
    records = run_on_dataset(model, dataset, label_to_category_id, device,
                             cfg.data.eval_batch_size, cfg.data.num_workers, show_progress=show_progress,
                             detect=inference_fn(model, cfg))
    if records is None:  # not rank 0: its detections went to rank 0
        return None
    if cfg.model.proposals_only:  # an RPN alone: class-agnostic proposals, scored by recall
        result = evaluate_proposals(dataset.ground_truth, records, source=dataset.ann_file)
    elif cfg.model.crowdhuman_metrics:  # CrowdHuman: AP and MR^-2 with ignore regions
        result = evaluate_crowdhuman(dataset.ground_truth, records, source=dataset.ann_file)
    else:
        result = evaluate_detections(dataset.ground_truth, records, source=dataset.ann_file)
    scored = {f.name: getattr(result, f.name) for f in dataclasses.fields(EvalResult)}
    return ModelEvaluation(**scored, detections=records)
