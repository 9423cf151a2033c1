"""A batch's ground truth padded into tensors once per training step, so that every head that
matches against it (the RPN, then each R-CNN stage) does so for all images in one set of kernels."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


def pad_boxes(boxes: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """(B, G, 4) float32 boxes padded with zeros to the largest count, and a (B, G) validity mask.

    Each image's boxes get a fifth column of ones before one pad_sequence call, so the mask comes
    out of the same padding: no host-to-device copy of the counts, which would wait for the GPU."""
    marked = [F.pad(b.to(device=device, dtype=torch.float32).reshape(-1, 4), (0, 1), value=1.0) for b in boxes]
    padded = pad_sequence(marked, batch_first=True)
    return padded[..., :4].contiguous(), padded[..., 4] > 0


def pad_labels(labels: list[Tensor], size: int, device: torch.device) -> Tensor:
    """(B, size) int64 labels, padded with zeros."""
    padded = pad_sequence([lab.to(device=device, dtype=torch.int64) for lab in labels], batch_first=True)
    if padded.shape[1] < size:
        padded = F.pad(padded, (0, size - padded.shape[1]))
    return padded


@dataclass
class PaddedGroundTruth:
    """Made once per training step by the detector: padding again in an R-CNN stage would cost
    launches after the RPN's NMS, where a GPU step waits for the host."""

    boxes: Tensor  # (B, G, 4) float32, zero rows past each image's count; G >= 1
    valid: Tensor  # (B, G) bool
    labels: Tensor  # (B, G) int64, zero past each image's count
    # regions whose anchors are neither objects nor background (targets' "ignore_boxes"), or None
    ignore_boxes: Tensor | None = None  # (B, R, 4) float32, zero rows past each image's count
    ignore_valid: Tensor | None = None  # (B, R) bool

    @classmethod
    def of(cls, targets: list[dict], device: torch.device) -> "PaddedGroundTruth":
        boxes, valid = pad_boxes([t["boxes"] for t in targets], device)
        if boxes.shape[1] == 0:  # no image has a box: one padding row keeps the matched gathers in range
            boxes, valid = boxes.new_zeros((len(targets), 1, 4)), valid.new_zeros((len(targets), 1))
        labels = pad_labels([t["labels"] for t in targets], boxes.shape[1], device)
        if not any("ignore_boxes" in t for t in targets):
            return cls(boxes, valid, labels)
        ignore_boxes, ignore_valid = pad_boxes([t.get("ignore_boxes", boxes.new_zeros((0, 4))) for t in targets],
                                               device)
        return cls(boxes, valid, labels, ignore_boxes, ignore_valid)
