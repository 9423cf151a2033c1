"""Running a detector over a dataset: COCO results records. An unreadable image stops the run
with a UserError naming it (data/loader.py).

Under torchrun (a process group of several processes) each rank runs the images rank, rank + W,
rank + 2W, ... and rank 0 gathers every rank's records and puts them back in the dataset's image
order, so the result equals a single-process run's (with eval batch size 1, exactly; with larger
batches the padding of a batch can differ and change the last bits)."""

import torch
from torch import nn
from tqdm import tqdm

from simpledet.data.coco import CocoDetection
from simpledet.data.loader import build_test_loader
from simpledet.engine import distributed as dist_utils
from simpledet.engine.evaluator import detections_to_coco


@torch.inference_mode()
def run_on_dataset(model: nn.Module, dataset: CocoDetection, label_to_category_id: dict[int, int],
                   device: torch.device, batch_size: int = 1, num_workers: int = 0,
                   show_progress: bool = True, detect=None, distributed: bool | None = None) -> list[dict] | None:
    """Detections for every image of `dataset`, as COCO results records. `detect` runs
    the model on a list of images (default: the model itself; see engine/tta.py).

    `distributed` (default: whenever a process group of more than one process is initialised)
    shards the images across ranks; rank 0 returns all the records, the other ranks None."""
    model.eval()
    detect = detect or model
    if distributed is None:
        distributed = dist_utils.is_distributed()
    rank, world = (dist_utils.get_rank(), dist_utils.get_world_size()) if distributed else (0, 1)
    indices = list(range(rank, len(dataset), world)) if distributed else None
    loader = build_test_loader(dataset, batch_size, num_workers, indices)
    records: list[dict] = []
    show_progress = show_progress and rank == 0
    for images, targets in tqdm(loader, desc="eval", disable=not show_progress, mininterval=1.0):
        outputs = detect([img.to(device) for img in images])
        # masks are binarised on the device: a quarter of the transfer, and what COCO scores
        outputs = [{k: (v > 0.5 if k == "masks" else v).cpu() for k, v in out.items()} for out in outputs]
        records.extend(detections_to_coco(outputs, [int(t["image_id"]) for t in targets], label_to_category_id))
    if distributed:
        gathered = dist_utils.gather_objects(records)
        if gathered is None:
            return None
        records = [r for part in gathered for r in part]
        order = {image_id: i for i, image_id in enumerate(_image_ids(dataset))}
        records.sort(key=lambda r: order.get(r["image_id"], len(order)))  # stable: per-image order kept
    return records


def _image_ids(dataset: CocoDetection) -> list[int]:
    """COCO image ids in the dataset's order (the order a single process emits records in)."""
    return [int(dataset.image_info(i)["image_id"]) for i in range(len(dataset))]
