"""Batching per-image ground truth into padded tensors, so matching runs on the whole batch, and
the regression targets of every anchor or candidate of a batch towards its matched ground truth."""

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from simpledet.structures.no_sync import host_tensor


def pad_boxes(boxes: list[Tensor], device: torch.device, size: int = 0) -> tuple[Tensor, Tensor]:
    """(B, G, 4) float32 boxes padded with zeros to the largest count, or to `size` if more, and a
    (B, G) validity mask. One pad_sequence call and a mask from the counts, not a copy and a fill
    per image."""
    padded = pad_sequence([b.to(device=device, dtype=torch.float32).reshape(-1, 4) for b in boxes],
                          batch_first=True)
    if padded.shape[1] < size:
        padded = torch.nn.functional.pad(padded, (0, 0, 0, size - padded.shape[1]))
    counts = host_tensor([len(b) for b in boxes], torch.device(device), torch.int64)
    valid = torch.arange(padded.shape[1], device=device) < counts[:, None]
    return padded, valid


def pad_labels(labels: list[Tensor], size: int, device: torch.device) -> Tensor:
    """(B, size) int64 labels, padded with zeros."""
    padded = pad_sequence([lab.to(device=device, dtype=torch.int64) for lab in labels], batch_first=True)
    if padded.shape[1] < size:
        padded = torch.nn.functional.pad(padded, (0, size - padded.shape[1]))
    return padded


@dataclass
class PaddedGroundTruth:
    """A batch's ground truth padded once per training step, for every head that matches against
    it (the RPN, then each R-CNN stage): padding again in the R-CNN stage would cost launches after
    the RPN's NMS, where a GPU step waits for the host."""

    boxes: Tensor  # (B, G, 4) float32, zero rows past each image's count; G >= 1
    valid: Tensor  # (B, G) bool
    labels: Tensor  # (B, G) int64, zero past each image's count

    @classmethod
    def of(cls, targets: list[dict], device: torch.device) -> "PaddedGroundTruth":
        boxes, valid = pad_boxes([t["boxes"] for t in targets], device)
        if boxes.shape[1] == 0:  # no image has a box: one padding row keeps the matched gathers in range
            boxes, valid = boxes.new_zeros((len(targets), 1, 4)), valid.new_zeros((len(targets), 1))
        return cls(boxes, valid, pad_labels([t["labels"] for t in targets], boxes.shape[1], device))

    def padded_to(self, size: int) -> "PaddedGroundTruth":
        """The same ground truth with `size` rows (no fewer than it has), the new ones padding."""
        extra = size - self.boxes.shape[1]
        if extra <= 0:
            return self
        pad = torch.nn.functional.pad
        return PaddedGroundTruth(pad(self.boxes, (0, 0, 0, extra)), pad(self.valid, (0, extra)),
                                 pad(self.labels, (0, extra)))


def matched_box_targets(box_coder, references: Tensor, gt_boxes: Tensor, matched: Tensor, fg: Tensor) -> Tensor:
    """(B, N, 4) regression targets of every reference box (anchors (N, 4) shared by the images, or
    candidates (B, N, 4)) towards its matched ground truth, for losses masked to the foreground
    `fg` (B, N): the same values there as encoding the foreground rows alone, found without a wait
    for the device. Elsewhere zero: a row matched to a padding box would encode to inf or NaN,
    and a NaN target reaches the gradients even where the loss is masked out.
    gt_boxes: (B, G, 4) with G >= 1, as PaddedGroundTruth gives them."""
    if references.dim() == 2:
        references = references[None].expand(len(fg), -1, -1)
    matched_boxes = torch.gather(gt_boxes, 1, matched[..., None].expand(-1, -1, 4))
    return torch.where(fg[..., None], box_coder.encode(references, matched_boxes), 0.0)
