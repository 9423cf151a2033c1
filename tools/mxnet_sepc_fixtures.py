"""Makes tests/fixtures/mxnet_made/sepc_*: SimpleDet's SEPC neck and head computed by MXNet itself,
at reduced width.

The graph is SimpleDet's own (imported from its source tree): models/sepc/builder.py
RetinaNetNeckWithBNWithSEPC (models/NASFPN RetinaNetNeckWithBN's FPN with a BN per output, then
SEPCFPN's PConvs, integrated BNs and CConv / LConv) and RetinaNetHeadWithBNWithSEPC (nb_conv = 0:
the concatenated branches split in two, cls_pred / bbox_pred), on random C3-C5 inputs. Every
convolution's num_filter is divided by 16 while the builder runs (256 -> 16 channels), except the
DCN offset convs (`*_offset`, 18 channels: one deformable group) and the predictors (9 anchors x
2 classes, 9 x 4), and the result is checked against the full-width graph: same nodes, names and
attributes but num_filter. The BNs are mx.sym.BatchNorm with SimpleDet's eps 1e-4 and momentum 0.997
(its SyncBatchNorm computes the same on one device).

Input C3-C5 of 9x12, 5x6 and 3x3 (P6 2x2, P7 1x1): the upsamplings are cropped (slice_like), and
SimpleDet's iBN split sizes (from PadParam, here 72x96) are the levels' real sizes. Weights are
random with a fixed seed: convs normal(0, 1 / sqrt(fan_in)), offset convs giving offsets of about a
pixel (some reach past the border), BN gamma / beta and moving statistics random. Outputs are
computed twice: in inference (is_train=False: moving statistics) and in training mode
(is_train=True: each BN normalises by its batch statistics, an iBN's over every position of every
level), both from MXNet's plain CPU operators (MXNET_SUBGRAPH_BACKEND=NONE).

Written per case NAME (sepc_full: deformable PConvs + iBN + deformable CConv / LConv, SimpleDet's
retina_r50v1b_fpn_sepc_1x at 2 PConvs; sepc_pconv: plain PConvs, no iBN, plain CConv / LConv, its
retina_r50v1b_fpn_pconv_1x at 2 PConvs):
  NAME-0000.params  MXNet's Module checkpoint (arg:/aux: names, SimpleDet's)
  NAME.npz          c3, c4, c5 (inputs, float32, batch 2); eval_cls_s8..s128, eval_bbox_s8..s128,
                    train_cls_*, train_bbox_* (MXNet's outputs); meta (JSON: builder, settings,
                    MXNet version, sources)

Run with an MXNet 1.x Python (never a dependency of this project):

    /work/mxnet-venv/bin/python tools/mxnet_sepc_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext

tests/test_sepc.py loads the files into our SEPC neck and head (through the SimpleDet checkpoint
converter's name rules) and compares; it needs no MXNet.
"""

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

BATCH = 2
C_CHANNELS = (8, 16, 32)  # C3, C4, C5 at reduced width
C_SIZES = ((9, 12), (5, 6), (3, 3))
PAD_SIZES = (72, 96)  # ceil(PAD / stride) gives every level's size, so SimpleDet's iBN splits fit
STRIDES = (8, 16, 32, 64, 128)
DIV = 16
NUM_CLASS = 1 + 2  # SimpleDet counts the background
KEEP_WIDTH = ("_offset", "cls_pred", "bbox_pred")
# name: (seed, SEPCParam settings). Two PConvs instead of SimpleDet's four keep the files small.
CASES = {
    "sepc_full": (11, dict(pconv_num=2, start_level=1, pconv_deform=True, ibn=True, lcconv_deform=True)),
    "sepc_pconv": (12, dict(pconv_num=2, start_level=1, pconv_deform=False, ibn=False, lcconv_deform=False)),
}


@contextlib.contextmanager
def reduced_width(mx, div):
    """While active, Convolution and DeformableConvolution built through mx.sym have num_filter / div,
    except those named in KEEP_WIDTH."""
    saved = []

    def scaled(op):
        def wrapper(*args, **kwargs):
            name = kwargs.get("name") or ""
            if div != 1 and not any(k in name for k in KEEP_WIDTH):
                value = int(kwargs["num_filter"])
                if value % div:
                    raise ValueError(f"{name}: num_filter={value} does not divide by {div}")
                kwargs["num_filter"] = value // div
            return op(*args, **kwargs)
        return wrapper

    for module, attr in ((mx.sym, "Convolution"), (mx.sym.contrib, "DeformableConvolution")):
        saved.append((module, attr, getattr(module, attr)))
        setattr(module, attr, scaled(getattr(module, attr)))
    try:
        yield
    finally:
        for module, attr, op in saved:
            setattr(module, attr, op)


def build_symbol(mx, settings):
    """SimpleDet's SEPC neck and head on C3-C5 variables: (cls logits, bbox deltas) per stride."""
    from models.sepc.builder import RetinaNetHeadWithBNWithSEPC, RetinaNetNeckWithBNWithSEPC
    from mxnext.complicate import normalizer_factory

    norm = normalizer_factory(type="local", eps=1e-4, mom=0.997)

    class NeckParam:
        fp16 = False
        normalizer = norm

    class SEPCParam:
        out_channels = 256
        normalizer = norm
        pad_sizes = PAD_SIZES
        stride = STRIDES

    for key, value in settings.items():
        setattr(SEPCParam, key, value)

    class RpnParam:
        num_class = NUM_CLASS
        fp16 = False
        normalizer = norm
        batch_image = BATCH
        nb_conv = 0

        class anchor_generate:
            scale = (4 * 2 ** 0, 4 * 2 ** (1.0 / 3.0), 4 * 2 ** (2.0 / 3.0))
            ratio = (0.5, 1.0, 2.0)
            stride = STRIDES
            image_anchor = None

        class head:
            conv_channel = 256
            mean = None
            std = None

    c3, c4, c5 = (mx.sym.var(f"c{i}") for i in (3, 4, 5))
    neck = RetinaNetNeckWithBNWithSEPC(NeckParam, SEPCParam).get_retinanet_neck((None, c3, c4, c5))
    cls, bbox = RetinaNetHeadWithBNWithSEPC(RpnParam).get_output(neck)
    return [cls[f"stride{s}"] for s in STRIDES] + [bbox[f"stride{s}"] for s in STRIDES]


def check_same_graph(full, reduced):
    """Same nodes, inputs, attributes and names (MXNet numbers unnamed nodes by a global counter: the
    numbers in names are not compared); only num_filter may differ. Returns how many differ."""
    a, b = json.loads(full.tojson())["nodes"], json.loads(reduced.tojson())["nodes"]
    assert len(a) == len(b), (len(a), len(b))
    changed = 0
    for x, y in zip(a, b):
        assert (x["op"], x["inputs"]) == (y["op"], y["inputs"]), (x["name"], y["name"])
        assert re.sub(r"\d+", "#", x["name"]) == re.sub(r"\d+", "#", y["name"]), (x["name"], y["name"])
        ax, ay = dict(x.get("attrs", {})), dict(y.get("attrs", {}))
        if ax.get("num_filter") != ay.get("num_filter"):
            changed += 1
            ax.pop("num_filter")
            ay.pop("num_filter")
        assert ax == ay, (x["name"], ax, ay)
    return changed


def init_params(sym, input_shapes, rng):
    arg_shapes, _, aux_shapes = sym.infer_shape(**input_shapes)
    args, aux = {}, {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name in input_shapes:
            continue
        if name.endswith("_offset_weight"):  # offsets of about a pixel on O(1) features
            fan_in = int(np.prod(shape[1:]))
            args[name] = rng.normal(0, 0.6 / np.sqrt(fan_in), shape)
        elif name.endswith("_offset_bias"):
            args[name] = rng.normal(0, 0.5, shape)
        elif name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            args[name] = rng.normal(0, 1 / np.sqrt(fan_in), shape)
        elif name.endswith("_gamma"):
            args[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("_beta", "_bias")):
            args[name] = rng.normal(0, 0.2, shape)
        else:
            raise KeyError(name)
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        if name.endswith("_moving_mean"):
            aux[name] = rng.normal(0, 0.3, shape)
        elif name.endswith("_moving_var"):
            aux[name] = rng.uniform(0.3, 2.0, shape)
        else:
            raise KeyError(name)
    return ({k: v.astype(np.float32) for k, v in args.items()}, {k: v.astype(np.float32) for k, v in aux.items()})


def run(mx, sym, inputs, args, aux, is_train):
    exe = sym.bind(mx.cpu(), {**{k: mx.nd.array(v) for k, v in inputs.items()},
                              **{k: mx.nd.array(v) for k, v in args.items()}},
                   aux_states={k: mx.nd.array(v) for k, v in aux.items()}, grad_req="null")
    return [o.asnumpy() for o in exe.forward(is_train=is_train)]


def make(mx, name, out_dir, sources):
    seed, settings = CASES[name]
    rng = np.random.default_rng(seed)
    # the builder prints a warning for every stride the padded size does not divide by: checked below
    with contextlib.redirect_stdout(io.StringIO()):
        full = mx.sym.Group(build_symbol(mx, settings))
        with reduced_width(mx, DIV):
            group = mx.sym.Group(build_symbol(mx, settings))
    changed = check_same_graph(full, group)
    inputs = {f"c{i + 3}": rng.normal(0, 1, (BATCH, c) + size).astype(np.float32)
              for i, (c, size) in enumerate(zip(C_CHANNELS, C_SIZES))}
    args, aux = init_params(group, {k: v.shape for k, v in inputs.items()}, rng)
    outputs = {}
    for mode, is_train in (("eval", False), ("train", True)):
        values = run(mx, group, inputs, args, aux, is_train)
        for i, s in enumerate(STRIDES):
            outputs[f"{mode}_cls_s{s}"] = values[i]
            outputs[f"{mode}_bbox_s{s}"] = values[len(STRIDES) + i]
    for s in STRIDES:  # the sizes SimpleDet's iBN splits by are the levels' real sizes
        assert list(outputs[f"eval_cls_s{s}"].shape[2:]) == [-(-p // s) for p in PAD_SIZES], s
    offsets = {}
    if settings["pconv_deform"] or settings["lcconv_deform"]:  # how far the deformable samples move
        internals = group.get_internals()
        # one offset conv output per level it runs on, all of the same name: picked by index
        picked = [(i, n) for i, n in enumerate(internals.list_outputs()) if n.endswith("_offset_output")]
        values = run(mx, mx.sym.Group([internals[i] for i, _ in picked]), inputs, args, aux, False)
        for (_, n), v in zip(picked, values):
            offsets.setdefault(n[: -len("_output")], []).append(float(np.abs(v).mean()))
        offsets = {n: float(np.mean(v)) for n, v in offsets.items()}

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, name)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in args.items()},
                                 {k: mx.nd.array(v) for k, v in aux.items()})
        loaded = mx.nd.load(prefix + "-0000.params")
        for key, value in loaded.items():  # what MXNet wrote is what was computed with
            kind, array = key.split(":", 1)
            assert np.array_equal(value.asnumpy(), (args if kind == "arg" else aux)[array]), key
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{name}-0000.params")
    meta = {"case": name, "built_by": "SimpleDet models/sepc/builder.py RetinaNetNeckWithBNWithSEPC + "
                                      "RetinaNetHeadWithBNWithSEPC (nb_conv 0)",
            "sepc": settings, "div": DIV, "seed": seed, "num_class": NUM_CLASS, "bn_eps": 1e-4,
            "pad_sizes": list(PAD_SIZES), "mxnet": mx.__version__, "sources": sources, "convs_reduced": changed,
            "mean_abs_offset": offsets, "outputs": {k: list(v.shape) for k, v in outputs.items()},
            "generator": "tools/mxnet_sepc_fixtures.py"}
    np.savez_compressed(out_dir / f"{name}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **inputs,
                        **{k: v.astype(np.float32) for k, v in outputs.items()})
    scales = ", ".join(f"{k} max|x| {np.abs(v).max():.3g}" for k, v in outputs.items() if k.endswith("s8"))
    print(f"{name}: {sum(v.size for v in args.values()) + sum(v.size for v in aux.values())} numbers, "
          f"{changed} convs reduced; {scales}"
          + (f"; mean |offset| {min(offsets.values()):.2f}..{max(offsets.values()):.2f} px" if offsets else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"))
    parser.add_argument("--simpledet-rev", default="339a4788395e3a88abc43ca5b0f72ee9203cccbb",
                        help="its commit, for the record")
    parser.add_argument("--mxnext-rev", default="14be3a5f7bd3054f3c9e4b712465e03ad248c3fc",
                        help="its commit, for the record")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    import mxnet as mx

    sources = {"simpledet": args.simpledet_rev, "mxnext": args.mxnext_rev}
    for name in CASES:
        make(mx, name, Path(args.out), sources)


if __name__ == "__main__":
    main()
