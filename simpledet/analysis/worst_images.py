"""The images a model gets most wrong, by the confusion matrix's counts (missed objects plus false
detections, at its IoU and score thresholds), drawn with their ground truth and detections."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from simpledet.analysis.confusion_matrix import ConfusionMatrix
from simpledet.analysis.image_boxes import ImageBoxes
from simpledet.visualize import draw_detections, save_image

COUNT = 10
GT_COLOUR = (255, 255, 255)  # ground truth in white, detections in their class colour
IGNORED_COLOUR = (128, 128, 128)


def worst_images(errors: dict[int, tuple[int, int]], count: int = COUNT) -> list[tuple[int, int, int]]:
    """(image id, missed, false) of the `count` images with the most missed + false boxes, worst
    first; ties keep the given (ground-truth) order; images without a mistake are left out."""
    wrong = [(image_id, missed, false) for image_id, (missed, false) in errors.items() if missed + false]
    return sorted(wrong, key=lambda x: -(x[1] + x[2]))[:count]


def draw_image_boxes(image: Tensor, boxes: ImageBoxes, names: list[str], score_threshold: float) -> Tensor:
    """uint8 picture: ground truth in white ('gt name', crowd/ignore in grey), then the detections
    at or above the score threshold as `predict --vis` draws them. Small images are enlarged so
    that the captions stay readable."""
    zoom = max(1, 512 // max(image.shape[-2:]))
    if zoom > 1:
        image = torch.nn.functional.interpolate(image[None], scale_factor=zoom, mode="nearest")[0]
    kept = boxes.det_scores >= score_threshold
    det_labels = [names[k] for k in boxes.det_classes[kept].tolist()]
    canvas = draw_detections(image, torch.from_numpy(boxes.det_boxes[kept]) * zoom, det_labels,
                             torch.from_numpy(boxes.det_scores[kept]))
    if len(boxes.gt_boxes):
        captions = [("ignored " if ignored else "gt ") + names[k]
                    for k, ignored in zip(boxes.gt_classes.tolist(), boxes.gt_ignored.tolist())]
        colours = [IGNORED_COLOUR if ignored else GT_COLOUR for ignored in boxes.gt_ignored.tolist()]
        canvas = draw_bounding_boxes(canvas, torch.from_numpy(boxes.gt_boxes).float() * zoom, labels=captions,
                                     colors=colours, width=1)
    return canvas


def draw_worst_images(out_dir: str | Path, ground_truth: dict, images: dict[int, ImageBoxes],
                      confusion: ConfusionMatrix, load_image: Callable[[int], Tensor],
                      count: int = COUNT) -> list[Path]:
    """Draws the worst images into out_dir as RANK_missedM_falseF_NAME.png; `load_image(image_id)`
    gives an image as float CHW in [0, 1]."""
    file_names = {im["id"]: Path(str(im.get("file_name", im["id"]))).stem for im in ground_truth["images"]}
    written = []
    for rank, (image_id, missed, false) in enumerate(worst_images(confusion.errors, count), 1):
        picture = draw_image_boxes(load_image(image_id), images[image_id], confusion.class_names,
                                   confusion.score_threshold)
        path = Path(out_dir) / f"{rank:02d}_missed{missed}_false{false}_{file_names[image_id]}.png"
        save_image(path, picture)
        written.append(path)
    return written
