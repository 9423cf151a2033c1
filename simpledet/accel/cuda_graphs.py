"""CUDA graphs for the training step (train.cuda_graphs).

A training step of an R50-FPN detector launches over a thousand small kernels, and on a fast GPU
the host cannot launch them as fast as the device runs them (bench/profile_step.py). The parts of
the step whose shapes a padded batch fixes are captured once per shape
(torch.cuda.make_graphed_callables) and replayed as two graph launches, forward and backward:

- the detector's `dense_step`: backbone, neck and the dense head's convolutions (the RPN's,
  RetinaNet's subnets);
- with train.cuda_graph_heads, each R-CNN stage's `match_and_sample` (matching, balanced sampling
  and targets on padded tensors) and, for heads without convolutions (the FPN models' 2MLP), its
  `box_head_losses` (box head, predictor and losses over the sampled RoIs).

Each is replaced on the one model instance by a GraphCache; the class's method stays the eager
definition, which evaluation, CPU tensors and shapes past the cache's limit run. The sampling's
inputs are padded first, ground truth to a power of two and candidates to a multiple of 256, so
that a run needs a few of its captures, not one per step. The rest of the heads, whose shapes
depend on the data, stays eager.

InputConfig.fixed_canvas pads every training batch to one of two canvases, so that COCO training
needs two captures of the dense step. Past `max_shapes` captures, other shapes run eagerly (each
capture keeps its activations' memory)."""

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.accel.graph_cache import GraphCache
from simpledet.errors import UserError
from simpledet.modeling.norm import SyncBatchNorm2d

log = logging.getLogger(__name__)

# make_runner(make_module, mode_from, with_grad, what) -> the callable that replaces a part:
# make_module builds a new module computing the part over the model's own parameters; mode_from
# is the module whose `training` says whether the model trains; with_grad whether the training
# step calls the part with gradients on; what names the part in logs.
MakeRunner = Callable[[Callable[[], nn.Module], nn.Module, bool, str], Callable[..., Any]]


class BoundMethod(nn.Module):
    """A model part's method as the module a capture takes: `parts` hold the parameters the method
    reads, which make_graphed_callables makes inputs of the graph beside the tensors passed. Not a
    submodule of the model: its state_dict keys stay as they are."""

    def __init__(self, method: Callable, parts: list[nn.Module]) -> None:
        super().__init__()
        self.method = method
        self.parts = nn.ModuleList(parts)

    def forward(self, *inputs: Tensor):
        return self.method(*inputs)


def _pad_rows(x: Tensor, rows: int, dim: int = 1) -> Tensor:
    """x with zero rows appended along `dim` up to `rows` (never fewer than it has)."""
    extra = rows - x.shape[dim]
    if extra <= 0:
        return x
    padding = [0, 0] * (x.dim() - 1 - dim) + [0, extra]
    return F.pad(x, padding)


class PaddedForCapture:
    """An R-CNN stage's match_and_sample run on ground truth padded to a power of two (at least 8)
    and candidates to a multiple of 256, the outputs cut back to the candidates given: the same
    results (a padding row is neither a valid ground truth nor a valid candidate, so none is
    matched or sampled), with a few input shapes a run instead of one per step."""

    def __init__(self, runner: Callable[..., Any]) -> None:
        self.runner = runner

    def __call__(self, gt_boxes: Tensor, gt_valid: Tensor, gt_labels: Tensor, boxes: Tensor, box_valid: Tensor,
                 priority: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        count = boxes.shape[1]
        gt_rows = max(8, 1 << (gt_boxes.shape[1] - 1).bit_length())
        rows = -(-count // 256) * 256
        sampled, per_image, matched, classes, box_targets = self.runner(
            _pad_rows(gt_boxes, gt_rows), _pad_rows(gt_valid, gt_rows), _pad_rows(gt_labels, gt_rows),
            _pad_rows(boxes, rows), _pad_rows(box_valid, rows), _pad_rows(priority, rows, dim=2))
        return sampled[:, :count], per_image, matched[:, :count], classes[:, :count], box_targets[:, :count]


def has_convolutions(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules())


def replace_graphable_parts(model: nn.Module, make_runner: MakeRunner, heads: bool = True) -> None:
    """Replaces, on this model instance, each part of a training step that a CUDA graph can
    capture with make_runner(...) (MakeRunner above): the detector's dense_step; with `heads`,
    each R-CNN stage's match_and_sample (padded for capture first, PaddedForCapture) and, where
    the box head has no convolution, its box_head_losses. The C4 heads' stage-5 convolutions stay
    eager. bench/count_ops.py passes a runner that replays the parts outside its count."""
    dense_parts = [part for part in (model.backbone, model.neck, model.dense_head) if part is not None]
    dense_step = functools.partial(type(model).dense_step, model)
    model.dense_step = make_runner(lambda: BoundMethod(dense_step, dense_parts), model.backbone, True,
                                   "backbone, neck and dense head")
    if not heads:
        return
    for stage in model.rcnn_stages():
        # After the RPN's NMS the device idles while the host launches the heads' kernels one by
        # one: the sampling, and the box head with its losses and their backward, become graphs.
        sampling = functools.partial(type(stage).match_and_sample, stage)
        stage.match_and_sample = PaddedForCapture(make_runner(lambda sampling=sampling: BoundMethod(sampling, []),
                                                              stage, False, "R-CNN sampling"))
        if not has_convolutions(stage.box_head):
            box_losses = functools.partial(type(stage).box_head_losses, stage)
            parts = [stage.box_head, stage.box_predictor]
            stage.box_head_losses = make_runner(lambda box_losses=box_losses, parts=parts:
                                                BoundMethod(box_losses, parts), stage.box_head, True,
                                                "box head and its losses")


def enable_cuda_graphs(model: nn.Module, max_shapes: int, device: torch.device, key: str = "train.cuda_graphs",
                       heads: bool = True) -> bool:
    """Replaces the graphable parts of `model`'s training step with GraphCaches (training on CUDA
    only; replace_graphable_parts). Returns whether it did; raises UserError for models the
    capture would run wrongly."""
    if max_shapes < 1:
        raise UserError(f"train.cuda_graph_shapes must be at least 1, got {max_shapes}")
    if device.type != "cuda":
        log.warning("%s needs a GPU: the backbone and neck run eagerly on %s", key, device)
        return False
    for part in (model.backbone, model.neck, model.dense_head):
        for name, module in part.named_modules() if part is not None else ():
            if isinstance(module, (SyncBatchNorm2d, nn.SyncBatchNorm)):
                raise UserError(f"{key}: {type(module).__name__} at {name or type(part).__name__} all-reduces across "
                                "processes, which a captured graph does not do here; use BN, frozen BN or "
                                "GroupNorm with CUDA graphs")

    def graph_cache(make_module, mode_from, with_grad, what):
        return GraphCache(make_module, mode_from, max_shapes, what, with_grad=with_grad)

    replace_graphable_parts(model, graph_cache, heads)
    return True
