"""Running a detector over a dataset: COCO results records, with unreadable images reported."""

import logging

import torch
from torch import nn
from tqdm import tqdm

from simpledet.data.coco import CocoDetection
from simpledet.data.loader import build_test_loader
from simpledet.engine.evaluator import detections_to_coco

log = logging.getLogger(__name__)


@torch.inference_mode()
def run_on_dataset(model: nn.Module, dataset: CocoDetection, label_to_category_id: dict[int, int],
                   device: torch.device, batch_size: int = 1, num_workers: int = 0,
                   show_progress: bool = True, detect=None) -> list[dict]:
    """Detections for every readable image of `dataset`, as COCO results records. `detect` runs
    the model on a list of images (default: the model itself; see engine/tta.py)."""
    model.eval()
    detect = detect or model
    loader = build_test_loader(dataset, batch_size, num_workers)
    records: list[dict] = []
    for images, targets in tqdm(loader, desc="eval", disable=not show_progress, mininterval=1.0):
        if not images:
            continue
        outputs = detect([img.to(device) for img in images])
        outputs = [{k: v.cpu() for k, v in out.items()} for out in outputs]
        records.extend(detections_to_coco(outputs, [int(t["image_id"]) for t in targets], label_to_category_id))
    skipped = dataset.stats.get("unreadable_images", 0)
    if skipped:
        log.warning("%d image(s) could not be read and were left out of the results", skipped)
    return records
