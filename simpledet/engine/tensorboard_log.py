"""TensorBoard event files of a training run (train.tensorboard), under OUT/tensorboard: what
metrics.jsonl records at each log step (losses, learning rate, images per second, the fp16 loss
scale), the 12 COCO stats of each evaluation, and a few validation images with the evaluated
model's detections drawn on them, so that progress can be watched and compared between runs.

Steps are iterations (1-based, as in metrics.jsonl). A run starting after iteration k (a resumed
run; 0 for a new one) opens its writer with purge_step k + 1: TensorBoard then hides whatever an
earlier process logged past k, which this run logs again, so no iteration shows twice."""

from pathlib import Path

import torch

from simpledet.data.coco import CocoDetection
from simpledet.errors import UserError
from simpledet.files import write_error
from simpledet.visualize import draw_detections

PICTURES = 4  # validation images drawn at each evaluation: the dataset's first, the same every time
PICTURE_SCORE = 0.5  # detections drawn on them: those scoring at least this


class TensorBoardLog:
    def __init__(self, log_dir: Path, start_iter: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("train.tensorboard needs the tensorboard package (pip install tensorboard); "
                            "or set train.tensorboard=false") from None
        self.log_dir = Path(log_dir)
        try:
            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=start_iter + 1)
        except OSError as e:
            raise write_error(self.log_dir, e) from None

    def log_step(self, record: dict) -> None:
        """A metrics.jsonl record of a log step: each number under train/."""
        step = record["iteration"]
        self._write(lambda: [self.writer.add_scalar(f"train/{name}", value, step)
                             for name, value in record.items() if name != "iteration"])

    def log_evaluation(self, iteration: int, stats: dict[str, float], dataset: CocoDetection,
                       detections: list[dict]) -> None:
        """An evaluation's stats under eval/, and the first images of the dataset with the
        detections that scored at least PICTURE_SCORE under predictions/."""
        def write() -> None:
            for name, value in stats.items():
                self.writer.add_scalar(f"eval/{name}", value, iteration)
            for tag, picture in prediction_pictures(dataset, detections):
                self.writer.add_image(f"predictions/{tag}", picture, iteration)
            self.writer.flush()
        self._write(write)

    def flush(self) -> None:
        self._write(self.writer.flush)

    def close(self) -> None:
        self._write(self.writer.close)

    def _write(self, action) -> None:
        # the writer's thread raises a failed write (a full disk) at the next call
        try:
            action()
        except OSError as e:
            raise write_error(self.log_dir, e) from None


def prediction_pictures(dataset: CocoDetection, detections: list[dict], count: int = PICTURES,
                        score_thresh: float = PICTURE_SCORE) -> list[tuple[str, torch.Tensor]]:
    """(file name, uint8 CHW picture) of the dataset's first `count` images, with the detections
    (COCO results records) that score at least `score_thresh` drawn on them."""
    names = {c["id"]: c["name"] for c in dataset.ground_truth["categories"]}
    pictures = []
    for index in range(min(count, len(dataset))):
        info = dataset.image_info(index)
        shown = [d for d in detections if d["image_id"] == info["image_id"] and d["score"] >= score_thresh]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in shown)]).reshape(-1, 4)
        scores = torch.tensor([d["score"] for d in shown])
        image = dataset[index][0]
        pictures.append((info["file_name"], draw_detections(image, boxes, [names[d["category_id"]] for d in shown],
                                                            scores)))
    return pictures
