"""A module called through CUDA graphs in training, one graph per input signature (train.cuda_graphs).

torch.cuda.make_graphed_callables captures a module's forward and backward for one set of input
shapes; replaying them costs the host two launches instead of one per kernel. GraphCache keeps one
capture per (shapes, strides, dtypes, autocast) of the inputs, up to `max_shapes`, and runs the
module eagerly for anything else: other shapes past that, CPU tensors, evaluation, gradients
on where the training step has them off or the other way round.

Not an nn.Module on purpose: the detector's parameters and state_dict keys stay as they are. The
captured graphs read the parameters' and buffers' memory, which the optimizer and BatchNorm update
in place. Frozen BN's folded scale and shift are cached tensors instead, so their statistics are
checked each call and a change (a checkpoint loaded) drops every graph."""

import inspect
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from simpledet.modeling.norm import FrozenBatchNorm2d

log = logging.getLogger(__name__)

# A capture may come mid-run (a new input size), while the DataLoader's pin-memory thread makes CUDA
# calls. In the default "global" mode such a call from another thread breaks the capture and fails
# in that thread, which ends the run; "thread_local" restricts the capturing thread alone. A torch
# whose make_graphed_callables lacks the argument captures in "global" mode.
CAPTURE_MODE = ({"capture_error_mode": "thread_local"}
                if "capture_error_mode" in inspect.signature(torch.cuda.make_graphed_callables).parameters else {})


class GraphCache:
    def __init__(self, make_module: Callable[[], nn.Module], mode_from: nn.Module, max_shapes: int, what: str,
                 with_grad: bool = True) -> None:
        """make_module: a new wrapper module over the same parameters each call
        (make_graphed_callables replaces the forward of the module it is given, so each capture
        needs its own); mode_from: a module of the model whose `training` says whether the model
        trains (model.eval() does not reach the wrapper, which is no submodule of it); what: how
        the log names the captured part; with_grad: whether the training step calls it with
        gradients on (a forward and a backward graph) or off (a forward graph alone)."""
        self.make_module = make_module
        self.mode_from = mode_from
        self.with_grad = with_grad
        self.eager = make_module()
        self.max_shapes = max_shapes
        self.what = what
        self.graphs: dict[tuple, nn.Module] = {}
        self.pool = None  # one memory pool for this cache's captures: they never run concurrently
        self.capture_failed = False
        self.frozen_bn_seen = None
        # the modules, found once (not their buffers: moving the model replaces those); checked
        # every call, so no walk over the whole module tree on the hot path
        self.frozen_bns = [m for m in self.eager.modules() if isinstance(m, FrozenBatchNorm2d)]

    def _frozen_bn_state(self) -> tuple:
        return tuple((b.data_ptr(), b._version) for m in self.frozen_bns
                     for b in (m.weight, m.bias, m.running_mean, m.running_var))

    def graphable(self, inputs: tuple[Tensor, ...]) -> bool:
        """Graphs are for CUDA training steps: CUDA inputs, the model training, gradients on or
        off as the step has them."""
        return inputs[0].is_cuda and self.mode_from.training and torch.is_grad_enabled() == self.with_grad

    def __call__(self, *inputs: Tensor):
        if not self.graphable(inputs):
            return self.eager(*inputs)
        frozen = self._frozen_bn_state()
        if frozen != self.frozen_bn_seen:
            if self.graphs:
                log.info("frozen BN statistics changed: dropping %d CUDA graphs of the %s", len(self.graphs), self.what)
            self.graphs.clear()
            self.frozen_bn_seen = frozen
        amp = torch.is_autocast_enabled("cuda")
        key = (tuple((tuple(x.shape), x.stride(), x.dtype) for x in inputs), amp,
               torch.get_autocast_dtype("cuda") if amp else None)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= self.max_shapes or self.capture_failed:
                return self.eager(*inputs)
            try:
                graphed = self._capture(inputs, amp)
            except RuntimeError as error:  # CUDA refused the capture: train on, eagerly
                log.warning("could not capture the %s as CUDA graphs, so it runs eagerly from now on: %s",
                            self.what, error)
                self.capture_failed = True
                return self.eager(*inputs)
            self.graphs[key] = graphed
        return graphed(*inputs)

    def _capture(self, inputs: tuple[Tensor, ...], amp: bool) -> nn.Module:
        log.info("capturing the %s as CUDA graphs for inputs %s (%d of at most %d shapes)", self.what,
                 [tuple(x.shape) for x in inputs], len(self.graphs) + 1, self.max_shapes)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        module = self.make_module()
        # the graph's own input buffers, each call copies into them; as the inputs, with or without gradient
        static_inputs = tuple(x.detach().clone().requires_grad_(x.requires_grad) for x in inputs)
        # the warm-up passes run forward in training mode: BatchNorm's running statistics are put
        # back afterwards, so that the capture leaves no trace in the model
        saved = [(b, b.clone()) for m in self.eager.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for b in m.buffers()]
        try:
            # autocast's weight-cast cache would hand the graph tensors freed after this step
            with torch.autocast("cuda", enabled=amp, dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False):
                graphed = torch.cuda.make_graphed_callables(module, static_inputs, pool=self.pool, **CAPTURE_MODE)
        finally:  # a refused capture too
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)
        # The graph reads frozen BN's cached folds by address: it keeps them alive, so that no
        # later recomputation of the cache can free memory a replay still reads.
        graphed.frozen_bn_folds = [m.scale_and_shift() for m in self.frozen_bns]
        return graphed
