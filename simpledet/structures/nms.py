"""Non-maximum suppression: per class, hard (torchvision) or soft (Bodla et al. 2017); and
several independent NMS calls at once."""

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, nms

from simpledet.parallel import run_in_threads

NMS_METHODS = ("nms", "soft_linear", "soft_gaussian")


def class_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float, max_keep: int,
              method: str = "nms", sigma: float = 0.5, min_score: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Indices of the kept boxes (best first) and their scores, NMS done within each label.

    Soft-NMS decays the scores of a picked box's same-class neighbours instead of removing them:
    linear s *= 1 - IoU for IoU above the threshold, Gaussian s *= exp(-IoU^2 / sigma). Only the
    first `max_keep` picks matter for the output, so the greedy loop runs at most that many times,
    each pick vectorised over all candidates.
    """
    if method == "nms":
        keep = batched_nms(boxes, scores, labels, iou_thresh)[:max_keep]
        return keep, scores[keep]
    if method not in NMS_METHODS:
        raise ValueError(f"unknown NMS method {method!r}: use one of {NMS_METHODS}")
    scores = scores.clone()
    alive = scores >= min_score
    picked, picked_scores = [], []
    for _ in range(min(max_keep, len(scores))):
        current = torch.where(alive, scores, torch.full_like(scores, -1.0))
        best = int(current.argmax())
        if current[best] < min_score:
            break
        picked.append(best)
        picked_scores.append(scores[best].clone())
        alive[best] = False
        same = alive & (labels == labels[best])
        iou = box_iou(boxes[best:best + 1], boxes)[0]
        if method == "soft_linear":
            decay = torch.where(iou > iou_thresh, 1.0 - iou, torch.ones_like(iou))
        else:
            decay = torch.exp(-(iou * iou) / sigma)
        scores = torch.where(same, scores * decay, scores)
        alive &= scores >= min_score
    index = torch.tensor(picked, dtype=torch.int64, device=boxes.device)
    kept_scores = torch.stack(picked_scores) if picked_scores else scores.new_zeros(0)
    return index, kept_scores


_side_streams: dict[torch.device, list] = {}
MAX_CUDA_THREADS = 16  # threads that issue NMS calls on CUDA, each to its own stream


def concurrent_nms(groups: list[tuple[Tensor, Tensor]], iou_thresh: float,
                   offsets: list[int] | None = None) -> list[Tensor]:
    """torchvision's nms(boxes, scores, iou_thresh) for each (boxes, scores) group, all at once;
    with `offsets`, each group's kept indices plus its offset (where the group starts in a flat
    layout), added in the group's own thread rather than by the waiting caller.

    Each call's decisive kernel runs in one thread block (CUDA) or one thread (CPU), and the call
    returns only once it knows its output's size. Called one after another, the RPN's five
    levels cost a training step ~4 ms of an idle GPU (H200, bench/profile_step.py). Here the
    calls are spread over pool threads, each group on its own CUDA stream, so the kernels overlap
    and the host waits for all of them together. The results are those of the calls in turn."""
    offsets = offsets if offsets is not None else [0] * len(groups)

    def shifted_nms(boxes: Tensor, scores: Tensor, offset: int) -> Tensor:
        keep = nms(boxes, scores, iou_thresh)
        return keep + offset if offset else keep

    # CUDA: a thread per call (up to 16), each waiting for its own stream; CPU: one per core
    workers = min(len(groups), MAX_CUDA_THREADS if groups and groups[0][0].is_cuda else torch.get_num_threads())
    if workers < 2:
        return [shifted_nms(boxes, scores, offset) for (boxes, scores), offset in zip(groups, offsets)]
    if not groups[0][0].is_cuda:
        return run_in_threads(lambda task: shifted_nms(*task[0], task[1]), list(zip(groups, offsets)), workers)

    device = groups[0][0].device
    main = torch.cuda.current_stream(device)
    streams = _side_streams.setdefault(device, [])
    streams += [torch.cuda.Stream(device) for _ in range(len(groups) - len(streams))]
    inputs_ready = main.record_event()

    def on_own_stream(task: tuple[tuple[Tensor, Tensor], int, torch.cuda.Stream]) -> tuple[Tensor, torch.cuda.Event]:
        (boxes, scores), offset, stream = task
        with torch.cuda.stream(stream):
            stream.wait_event(inputs_ready)  # the inputs are made on the main stream
            boxes.record_stream(stream)  # their memory is not reused before this stream has read them
            scores.record_stream(stream)
            keep = shifted_nms(boxes, scores, offset)
            return keep, stream.record_event()

    results = run_in_threads(on_own_stream, list(zip(groups, offsets, streams)), workers)
    for keep, done in results:
        main.wait_event(done)  # the main stream's later work sees every result
        keep.record_stream(main)  # made on a side stream, read on the main one
    return [keep for keep, _ in results]
