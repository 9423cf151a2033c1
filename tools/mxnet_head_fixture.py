"""What the head-fixture tools (tools/mxnet_{dual_head,msrcnn,crowdhuman}_fixtures.py) share: a
SimpleDet head built by SimpleDet's own code at reduced width, bound with random weights and run
by MXNet, its parameters and outputs written to tests/fixtures/mxnet_made. Run with an MXNet 1.x
Python (never a dependency of this project)."""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"


def source_args(description: str, argv=None) -> argparse.Namespace:
    """--simpledet and --mxnext source trees (put on sys.path) and --out, the fixture folder."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    return args


def reduced_width(mx, div: int, keep: tuple[str, ...] = (), convs: bool = True, fc_width: int | None = None):
    """mx.sym.Convolution (with `convs`) and FullyConnected made `div` times narrower while a builder
    runs, except the layers named in `keep` (whose widths are set by the classes) and, with
    `fc_width`, fully connected layers of any other width. Returns the function that restores them."""
    conv, fc = mx.sym.Convolution, mx.sym.FullyConnected

    def convolution(*args, **kwargs):
        kwargs["num_filter"] //= div
        return conv(*args, **kwargs)

    def fully_connected(*args, **kwargs):
        if kwargs.get("name") not in keep and fc_width in (None, kwargs.get("num_hidden")):
            kwargs["num_hidden"] //= div
        return fc(*args, **kwargs)

    if convs:
        mx.sym.Convolution = convolution
    mx.sym.FullyConnected = fully_connected
    return lambda: (setattr(mx.sym, "Convolution", conv), setattr(mx.sym, "FullyConnected", fc))


def run_with_random_weights(mx, group, inputs: dict[str, np.ndarray], rng) -> tuple[dict, list[np.ndarray]]:
    """The symbol's parameters drawn from `rng` (weights He-normal, so that activations keep their
    scale layer to layer; biases N(0, 0.1)), and its outputs on `inputs` in inference mode."""
    arg_shapes, _, aux_shapes = group.infer_shape(**{k: v.shape for k, v in inputs.items()})
    assert not aux_shapes
    params = {}
    for name, shape in zip(group.list_arguments(), arg_shapes):
        if name in inputs:
            continue
        if name.endswith("_weight"):
            params[name] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        else:
            params[name] = rng.normal(0, 0.1, shape)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    feed = {**inputs, **params}
    exe = group.bind(mx.cpu(), {k: mx.nd.array(feed[k]) for k in group.list_arguments()}, grad_req="null")
    return params, [o.asnumpy() for o in exe.forward(is_train=False)]


def write_fixture(mx, out: str | Path, name: str, params: dict, meta: dict, arrays: dict) -> None:
    """NAME-0000.params (arg: names, mx.model.save_checkpoint) and NAME.npz (`arrays` and the meta
    JSON, with MXNet's version)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, name)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{name}-0000.params")
    meta = dict(meta, mxnet=mx.__version__)
    np.savez_compressed(out_dir / f"{name}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
