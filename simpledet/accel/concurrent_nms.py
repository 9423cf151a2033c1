"""Many independent NMS calls at once: threads on the CPU, CUDA streams on a GPU.

torchvision's NMS decides in one thread block on a GPU (one thread on the CPU), and each call
returns only once it knows the size of its output, so calls made one after another leave the
device mostly idle. Here each call runs from its own pool thread, each on its own CUDA stream: the
streams wait on an event for their inputs, and the main stream waits on each stream's event
before the results are read. The results are those of the calls in turn."""

import torch
from torch import Tensor
from torchvision.ops import nms

from simpledet.accel.thread_pool import run_in_threads

_side_streams: dict[torch.device, list] = {}
MAX_CUDA_THREADS = 16  # threads that issue NMS calls on CUDA, each to its own stream


def concurrent_nms(groups: list[tuple[Tensor, Tensor]], iou_thresh: float,
                   offsets: list[int] | None = None) -> list[Tensor]:
    """torchvision's nms(boxes, scores, iou_thresh) for each (boxes, scores) group, all at once;
    with `offsets`, each group's kept indices plus its offset (where the group starts in a flat
    layout), added in the group's own thread rather than by the waiting caller. The same contract
    as simpledet.modeling.nms.nms_each, which makes the calls in turn."""
    offsets = offsets if offsets is not None else [0] * len(groups)

    def shifted_nms(boxes: Tensor, scores: Tensor, offset: int) -> Tensor:
        keep = nms(boxes, scores, iou_thresh)
        return keep + offset if offset else keep

    # CUDA: a thread per call (up to 16), each waiting for its own stream; CPU: one per core
    workers = min(len(groups), MAX_CUDA_THREADS if groups and groups[0][0].is_cuda else torch.get_num_threads())
    if workers < 2 or torch.compiler.is_compiling():  # a graph being traced or exported: the calls in turn
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
