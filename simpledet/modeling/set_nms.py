"""Set NMS (SimpleDet's operator_py/nms.py `set_nms`, CrowdDet's): greedy NMS in which boxes of the
same set (the predictions of one proposal, in the double-prediction head) never suppress each
other, so that two overlapping people predicted by one proposal both survive.

Greedy NMS is the unique `keep` with keep[j] = no kept i ranked above j overlaps j by IoU > thresh
(from another set). It is found on the whole suppression matrix at once: starting from every box
kept, each round recomputes every box from the previous round's answer; the first k boxes in score
order are settled after k rounds, so the rounds stop at a fixed point, after as many rounds as
the longest chain of suppressions (a few in practice), each one batched over all pairs.
IoU is torchvision's (no +1 in widths, unlike SimpleDet's pixel-inclusive areas).
"""

import torch
from torch import Tensor
from torchvision.ops import box_iou


def set_nms(boxes: Tensor, scores: Tensor, sets: Tensor, iou_thresh: float) -> Tensor:
    """Indices of the boxes kept, by descending score. boxes (N, 4) x1y1x2y2, scores (N,),
    sets (N,) integers: boxes with equal set ids do not suppress each other."""
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked, ranked_sets = boxes[order], sets[order]
    # suppresses[i, j]: i, ranked above j, would suppress j if kept
    suppresses = (box_iou(ranked, ranked) > iou_thresh) & (ranked_sets[:, None] != ranked_sets[None, :])
    suppresses = suppresses.triu(diagonal=1)
    keep = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    while True:
        settled = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(settled, keep):
            return order[keep]
        keep = settled
