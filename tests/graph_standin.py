"""torch.cuda.make_graphed_callables stood in on the CPU, close enough to the real one for tests.

What the real graphs do that a test should see:
- the capture's warm-up passes (forward and backward) run in training mode, and a capture is
  refused on any operator that makes the host wait or copies from pageable host memory
  (CaptureRules; on a GPU a refusal is only a warning and an eager fallback, easy to miss);
- a replay copies its inputs into static buffers and writes its outputs into static buffers, so
  each call overwrites the tensors the previous call returned (a caller that keeps them across
  calls reads the wrong values, as it would on a GPU);
- gradients reach the inputs and the parameters through one autograd Function, computed from the
  static inputs: a second forward before the first one's backward gives the first one the
  second's gradients, as a replayed backward graph would;
- every backward writes the same static gradient buffers and hands back aliases of them, which
  autograd may keep as a parameter's .grad (pytorch/pytorch#181723): a .grad zeroed in place
  instead of set to None, or a part replayed twice in one step, doubles or loses gradients here
  as on a GPU.
"""

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from simpledet.accel.graph_cache import GraphCache


class CaptureRules(TorchDispatchMode):
    """Records what CUDA refuses inside a capture: an operator that makes the host wait for the
    device (nonzero, item, boolean-mask indexing, bincount, NMS: a size read back), and a tensor
    made from host data (torch.tensor: a copy from pageable host memory)."""

    WAITING = {"aten.nonzero.default", "aten._local_scalar_dense.default", "aten.bincount.default",
               "torchvision.nms.default", "aten.masked_select.default", "aten.unique_dim.default",
               "aten._unique2.default", "aten.repeat_interleave.Tensor", "aten.lift_fresh.default"}

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in self.WAITING:
            self.refused.append(name)
        if name.startswith(("aten.index.", "aten.index_put")) and any(
                getattr(t, "dtype", None) == torch.bool for t in args[1]):
            self.refused.append(name + " (boolean mask)")
        return func(*args, **(kwargs or {}))


def batch_norm_buffers(module: nn.Module) -> list[torch.Tensor]:
    return [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]


class StaticReplay:
    """One captured module: static input and output buffers, and the autograd Function a replay
    goes through. The backward recomputes the forward from the static inputs (with the running
    statistics of BatchNorm put back: a replayed backward graph updates none)."""

    def __init__(self, forward, module: nn.Module, sample_args: tuple[torch.Tensor, ...]) -> None:
        self.forward = forward
        self.params = tuple(module.parameters())
        self.bn_buffers = batch_norm_buffers(module)
        # the backward graph is captured from the forward's autocast state; recomputing must use it too
        self.autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        self.static_inputs = tuple(a.detach().clone() for a in sample_args)
        self.input_requires_grad = [a.requires_grad for a in sample_args]
        # captured in the caller's grad mode, which says which outputs have a gradient
        outputs, self.spec = tree_flatten(forward(*sample_args))
        self.static_outputs = tuple(o.detach().clone() for o in outputs)
        self.output_requires_grad = [o.requires_grad for o in outputs]
        self.static_grads = {}  # by position among inputs and parameters, made by the first backward

    def __call__(self, *inputs: torch.Tensor):
        return tree_unflatten(list(Replay.apply(self, *inputs, *self.params)), self.spec)

    def recompute(self, with_grad: bool):
        inputs = [s.detach().requires_grad_(with_grad and r)
                  for s, r in zip(self.static_inputs, self.input_requires_grad)]
        enabled, dtype = self.autocast
        with torch.set_grad_enabled(with_grad), torch.autocast("cpu", dtype=dtype, enabled=enabled):
            return inputs, tree_flatten(self.forward(*inputs))[0]


class Replay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, replay: StaticReplay, *inputs_and_params):
        for static, x in zip(replay.static_inputs, inputs_and_params):
            static.copy_(x)
        _, outputs = replay.recompute(with_grad=False)
        for static, out in zip(replay.static_outputs, outputs):
            static.copy_(out)
        ctx.replay = replay
        return tuple(o.detach() for o in replay.static_outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        replay = ctx.replay
        saved = [b.clone() for b in replay.bn_buffers]
        inputs, outputs = replay.recompute(with_grad=True)
        pairs = [(o, g) for o, g, r in zip(outputs, grads, replay.output_requires_grad) if r]
        wrt = [x for x in (*inputs, *replay.params) if x.requires_grad]
        found = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True)
                     if pairs else [None] * len(wrt))
        with torch.no_grad():
            for buffer, value in zip(replay.bn_buffers, saved):
                buffer.copy_(value)
            # as torch's: every replay writes the same static gradient buffers and hands back aliases
            # of them, which AccumulateGrad may keep as a parameter's .grad (pytorch/pytorch#181723)
            grads = [next(found) if x.requires_grad else None for x in (*inputs, *replay.params)]
            for i, g in enumerate(grads):
                if g is not None:
                    replay.static_grads.setdefault(i, torch.empty_like(g)).copy_(g)
        return None, *(None if g is None else replay.static_grads[i].detach() for i, g in enumerate(grads))


class FakeGraphs:
    """Installs the stand-in: make_graphed_callables counted, its captures checked against
    CaptureRules and replayed through StaticReplay; GraphCache takes CPU tensors for CUDA ones."""

    def __init__(self, monkeypatch) -> None:
        self.captured = []
        monkeypatch.setattr(torch.cuda, "make_graphed_callables", self.capture)
        monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
        monkeypatch.setattr(GraphCache, "graphable", lambda cache, inputs: cache.mode_from.training
                            and torch.is_grad_enabled() == cache.with_grad)

    def capture(self, module, sample_args, pool=None, capture_error_mode="global"):
        assert pool == "pool" and all(not a.requires_grad or a.is_leaf for a in sample_args)
        # the pinned torch has the argument: a pin-memory thread's CUDA calls do not break a capture
        assert capture_error_mode == "thread_local"
        self.captured.append([tuple(a.shape) for a in sample_args])
        with CaptureRules() as rules:
            for _ in range(3):  # the warm-up passes, in training mode, as torch's
                outputs = [o for o in tree_flatten(module(*sample_args))[0] if o.requires_grad]
                wrt = [a for a in (*sample_args, *module.parameters()) if a.requires_grad]
                if outputs:
                    torch.autograd.grad(outputs, wrt, [torch.ones_like(o) for o in outputs], allow_unused=True)
            replay = StaticReplay(module.forward, module, sample_args)  # the capture itself
        assert not rules.refused, f"a CUDA capture refuses {sorted(set(rules.refused))}"
        eager_forward, training = module.forward, module.training
        # as torch's: the graphs serve the training mode they were captured in
        module.forward = lambda *args: replay(*args) if module.training == training else eager_forward(*args)
        return module


def assert_graphed_step_equals_eager(plain: nn.Module, graphed: nn.Module, images: list, targets: list,
                                     amp: bool = False) -> dict[str, torch.Tensor]:
    """One training step of each model (the samplers' draws seeded alike; bf16 autocast with
    `amp`): the graphed model's losses and gradients equal the plain one's bit for bit. Returns
    the graphed model's losses."""
    results = []
    for model in (plain, graphed):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            losses = model(images, targets)
        sum(losses.values()).backward()
        results.append((losses, [p.grad for p in model.parameters() if p.requires_grad]))
    (expected, expected_grads), (got, got_grads) = results
    assert expected.keys() == got.keys() and all(torch.isfinite(v) for v in got.values())
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert all(a is not None and torch.equal(a, b) for a, b in zip(expected_grads, got_grads))
    return got
