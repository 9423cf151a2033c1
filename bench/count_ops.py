"""What the host launches in the eager part of a training step with train.cuda_graphs, counted on
the CPU: no GPU needed, and the counts are the same on one.

On a fast GPU a detector's step at 2 images is bound by the host unless its launches are few:
with the backbone, neck and dense head replayed as CUDA graphs, what is left is the heads'
operators, each launched one by one, and the points where the host waits for the device. The
first wait (the first NMS) comes once the device has run the backbone; from there to the end of
the step the device mostly waits for the host, so the operators after it (the "serial window")
set the step's time. This script runs one training step with the captured parts replayed outside
the count, forward and backward, as the graphs would be (their parameters' gradients are still
accumulated, in the count), and counts, per part of the model: the operators dispatched, those
that launch a kernel (not views), and the waits: nonzero, bincount (two on CUDA), item,
boolean-mask indexing, Tensor.tolist, NMS.

    python bench/count_ops.py                         # ours_tv Faster R50-FPN
    python bench/count_ops.py --only "Mask,RetinaNet" --json runs/count_ops.json
"""

import argparse
import collections
import json
from pathlib import Path

import torch
from speed import calibrate_frozen_bn, make_inputs, sgd
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten
from train_speed import FAMILIES

from simpledet.accel.concurrent_nms import concurrent_nms
from simpledet.accel.cuda_graphs import replace_graphable_parts
from simpledet.files import atomic_write_text

WAITING = {"aten.nonzero.default", "aten._local_scalar_dense.default", "aten.bincount.default",
           "torchvision.nms.default", "aten.masked_select.default", "aten.unique_dim.default",
           "aten._unique2.default", "aten.repeat_interleave.Tensor"}
NO_KERNEL = {"view", "select", "slice", "unsqueeze", "squeeze", "expand", "t", "detach", "unbind",
             "permute", "lift_fresh", "split_with_sizes", "split", "alias", "as_strided", "_unsafe_view",
             "transpose", "_reshape_alias", "empty", "scalar_tensor", "reshape", "flatten"}


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.part = "?"
        self.paused = False  # while the captured part runs
        self.ops = collections.Counter()
        self.kernels = collections.Counter()
        self.waits = collections.Counter()
        self.after_first_wait = collections.Counter()  # (ops, kernels) once the host has waited

    def wait(self, what: str) -> None:
        self.waits[(self.part, what)] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.paused:
            return func(*args, **(kwargs or {}))
        name = str(func)
        kernel = name.split(".")[1] not in NO_KERNEL if name.startswith("aten.") else not name.startswith("profiler")
        if not name.startswith("profiler"):
            self.ops[self.part] += 1
            self.kernels[self.part] += kernel
            if self.waits:
                self.after_first_wait["ops"] += 1
                self.after_first_wait["kernels"] += kernel
        if name in WAITING:
            self.wait(name.split(".")[1])
            if name == "aten.bincount.default":  # CUDA's reads the input's min and max: two waits
                self.wait("bincount")
        if name in ("aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default") and any(
                getattr(t, "dtype", None) == torch.bool for t in args[1]):
            self.wait("boolean index")
        return func(*args, **(kwargs or {}))


class Replayed(torch.autograd.Function):
    """A graphed part's replay, uncounted: forward, and backward to its inputs and parameters,
    as make_graphed_callables' function does with its two graphs."""

    @staticmethod
    def forward(ctx, counter, module, num_inputs, spec, *inputs_and_params):
        """spec: a list that receives the structure of the outputs (the function returns them flat)."""
        counter.paused = True
        inputs = [x.detach().requires_grad_(x.requires_grad) for x in inputs_and_params[:num_inputs]]
        with torch.enable_grad():
            outputs, structure = tree_flatten(module(*inputs))
        spec.append(structure)
        counter.paused = False
        ctx.counter, ctx.outputs = counter, outputs
        ctx.wanted = [x for x in inputs if x.requires_grad] + list(inputs_and_params[num_inputs:])
        ctx.mark = [x.requires_grad for x in inputs_and_params]
        return tuple(o.detach() for o in outputs)

    @staticmethod
    def backward(ctx, *grads):
        ctx.counter.paused = True
        pairs = [(o, g) for o, g in zip(ctx.outputs, grads) if o.requires_grad and g is not None]
        found = iter(torch.autograd.grad([o for o, _ in pairs], ctx.wanted, [g for _, g in pairs], allow_unused=True))
        ctx.counter.paused = False
        return (None, None, None, None, *(next(found) if wanted else None for wanted in ctx.mark))


def replay_outside_the_count(counter: "OpCounter"):
    """The runner replace_graphable_parts installs in place of each CUDA graph: the part runs, as
    a replay would, but the counter does not see it (a graph is two launches, not its kernels)."""
    def make_runner(make_module, mode_from, with_grad, what):
        module = make_module()
        params = [p for p in module.parameters() if p.requires_grad]

        def run(*inputs):
            if not with_grad:
                counter.paused = True
                try:
                    return module(*inputs)
                finally:
                    counter.paused = False
            spec = []
            flat = Replayed.apply(counter, module, len(inputs), spec, *inputs, *params)
            return tree_unflatten(list(flat), spec[0])
        return run
    return make_runner


def count_row(name, build, masks, args) -> dict:
    torch.manual_seed(0)
    model = build((args.height, args.width)).train()
    if getattr(build, "ours", False):  # as the trainer runs it: its targets checked on the CPU before they move
        model.check_input_values = False
    images, targets = make_inputs(args.batch, args.height, args.width, "cpu", masks=masks, label_high=80)
    calibrate_frozen_bn(model, images)
    optimizer = sgd(model, True, "cpu")
    counter = OpCounter()
    replace_graphable_parts(model, replay_outside_the_count(counter))
    for part_name, child in model.named_children():
        if part_name not in ("backbone", "neck"):
            child.register_forward_pre_hook(lambda module, inputs, n=part_name: setattr(counter, "part", n))

    # NMS in pool threads and tolist (not dispatched on the CPU) are counted where they are called:
    # each NMS call of the RPN's nms_each (its public kernel slot) is one wait, made at once by
    # accel.concurrent_nms
    tolist = torch.Tensor.tolist
    active = [False]

    def counted_tolist(tensor):
        if active[0]:
            counter.wait("tolist")
        return tolist(tensor)

    def counted(nms_each):
        def run(groups, iou_thresh, offsets=None):
            for _ in groups if active[0] else ():
                counter.wait("nms (pool thread)" if nms_each is concurrent_nms else "nms")
            counter.paused = True  # its operators are the NMS calls counted here
            try:
                return nms_each(groups, iou_thresh, offsets)
            finally:
                counter.paused = False
        return run

    rpn = model.dense_head if model.rcnn_stages() else None
    if rpn is not None:
        rpn.nms_each = counted(rpn.nms_each)
    torch.Tensor.tolist = counted_tolist
    try:
        for step in range(2):  # the second step is counted: caches (anchors, layouts) are warm
            if step:
                counter.__init__()
            active[0] = bool(step)
            with counter:
                counter.part = "preprocess"
                losses = model(images, targets)
                counter.part = "loss sum"
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                counter.part = "backward"
                loss.backward()
                counter.part = "optimizer"
                optimizer.step()
    finally:
        torch.Tensor.tolist = tolist
    parts = {p: {"ops": counter.ops[p], "kernels": counter.kernels[p]} for p in counter.ops}
    waits = collections.Counter()
    for (part, what), n in counter.waits.items():
        waits[f"{part}: {what}"] += n
    nms_in_turn = sum(n for (_, what), n in counter.waits.items() if what == "nms")
    nms_at_once = sum(n for (_, what), n in counter.waits.items() if what == "nms (pool thread)")
    return {"name": name, "ops": sum(counter.ops.values()), "kernels": sum(counter.kernels.values()),
            "nms_in_turn": nms_in_turn, "nms_at_once": nms_at_once,
            "other_waits": sum(counter.waits.values()) - nms_in_turn - nms_at_once,
            "serial_window": dict(counter.after_first_wait),
            "by_part": parts, "waits_by_kind": dict(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="ours_tv Faster R50-FPN",
                        help="comma-separated substrings of bench/train_speed.py row names (ours only)")
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    torch.set_num_threads(max(2, torch.get_num_threads()))  # the pools' threads, as on a GPU machine
    rows = [count_row(name, build, masks, args) for name, build, masks, _ in FAMILIES
            if getattr(build, "ours", False) and any(s.strip() in name for s in args.only.split(","))]
    print(f"eager part of a graphed training step, batch {args.batch}, {args.height}x{args.width}")
    print("| model | operators | of them kernels | NMS calls | other waits for the device "
          "| after the first wait: operators (kernels) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        window = r["serial_window"]
        nms = (f"{r['nms_at_once']} at once" if r["nms_at_once"] else
               f"{r['nms_in_turn']} in turn" if r["nms_in_turn"] else "0")
        print(f"| {r['name']} | {r['ops']} | {r['kernels']} | {nms} | {r['other_waits']} | "
              f"{window.get('ops', 0)} ({window.get('kernels', 0)}) |")
    for r in rows:
        print(f"{r['name']}: by part {r['by_part']}; waits {r['waits_by_kind']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
