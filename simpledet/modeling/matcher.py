"""Assigns each anchor / proposal to a ground-truth box by IoU, for a whole batch at once."""

import torch
from torch import Tensor

BACKGROUND = 0
FOREGROUND = 1
IGNORE = -1


class Matcher:
    """IoU thresholds to labels: >= fg_iou is foreground, < bg_iou background, between ignored.

    With allow_low_quality_matches (the RPN's rule), each ground-truth box also claims the
    candidates it overlaps most, even below fg_iou, so that no object is left without an anchor.
    """

    def __init__(self, fg_iou: float, bg_iou: float, allow_low_quality_matches: bool = False,
                 bg_iou_low: float = 0.0) -> None:
        if bg_iou > fg_iou:
            raise ValueError(f"bg_iou {bg_iou} must not exceed fg_iou {fg_iou}")
        self.fg_iou = fg_iou
        self.bg_iou = bg_iou
        self.bg_iou_low = bg_iou_low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor, gt_valid: Tensor) -> tuple[Tensor, Tensor]:
        """iou: (B, G, N) between G (padded) ground truths and N candidates per image;
        gt_valid: (B, G) bool, False for padding rows.

        Returns matched_idx (B, N) int64 (index of the best ground truth, 0 where none) and
        labels (B, N) int64 in {FOREGROUND, BACKGROUND, IGNORE}.
        """
        batch, num_gt, num_candidates = iou.shape
        if num_gt == 0:
            zeros = torch.zeros((batch, num_candidates), dtype=torch.int64, device=iou.device)
            return zeros, zeros.clone()  # everything is background
        # torch.where, not boolean index assignment: no host-device synchronisation
        iou = iou.masked_fill(~gt_valid[:, :, None], -1.0)
        best_iou, matched_idx = iou.max(dim=1)
        labels = torch.where(best_iou >= self.fg_iou, FOREGROUND, IGNORE)
        is_bg = (best_iou < self.bg_iou) & (best_iou >= self.bg_iou_low)
        labels = torch.where(is_bg, BACKGROUND, labels)

        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=2, keepdim=True).values  # (B, G, 1)
            # a gt row with no overlap at all claims nothing (and padding rows are -1)
            is_best = (iou == best_per_gt) & (best_per_gt > 0)
            labels = torch.where(is_best.any(dim=1), FOREGROUND, labels)
        # images without any valid ground truth: all background
        labels = torch.where(gt_valid.any(dim=1)[:, None], labels, BACKGROUND)
        return matched_idx, labels
