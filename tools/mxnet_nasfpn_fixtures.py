"""Makes tests/fixtures/mxnet_made/nasfpn_*: SimpleDet's NAS-FPN family necks and head computed by
MXNet itself, at reduced width, on random C2-C5 features.

Each part is built by SimpleDet's own builder classes, imported from its source tree:
  nasfpn_neck     models/NASFPN/builder.py NASFPNNeck, 2 stages at width 8 (the zoo: 7 at 256 / 384)
  nasfpn_tdbu     models/FPG/builder.py PAFPNNeckP3P7 (what config/NASFPN/*tdbu* builds), 2 stages at 8
  nasfpn_tdbu_k2  models/NASFPN/builder.py TopDownBottomUpFPNNeck (2x2 pooling), 2 stages at 8
  nasfpn_retina   models/NASFPN/builder.py RetinaNetNeckWithBN (its 256 channels divided by 32) and
                  RetinaNetHeadWithBN (conv_channel 8, 3 classes + background, 9 anchors)
The norm is mxnext's normalizer_factory("localbn") (SimpleDet's 640 configs; the syncbn of the
1024 / 1280 configs is the same function at test time), run in inference mode: the moving
statistics are measured on the activations that reach each BN and then perturbed, gamma and
beta are random. Inputs: C3-C5 of one image at 32x16, 16x8, 8x4 (8, 12, 16 channels) (C6, C7 and
P6, P7 4x2 and 2x1: non-square, every level present).

Written per part NAME: NAME-0000.params (MXNet's Module checkpoint, arg:/aux: names) and NAME.npz
(c3, c4, c5 inputs, outputs by SimpleDet's names, meta JSON with the builder and MXNet version).

Run with an MXNet 1.x Python (never a dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_nasfpn_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext

tests/test_nasfpn.py loads them into our modules through the checkpoint converter's name rules.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
C_SHAPES = {"c3": (1, 8, 32, 16), "c4": (1, 12, 16, 8), "c5": (1, 16, 8, 4)}
WIDTH = 8
STAGES = 2
NUM_CLASS = 1 + 3
STRIDES = (8, 16, 32, 64, 128)


def _param_class(name, **attrs):
    return type(name, (), attrs)


def build(mx, part):
    """(output names, output symbols, builder text) of one part."""
    from mxnext.complicate import normalizer_factory

    norm = normalizer_factory(type="localbn")
    feats = [mx.sym.var("c2")] + [mx.sym.var(name) for name in ("c3", "c4", "c5")]
    neck_param = _param_class("NeckParam", fp16=False, normalizer=norm, dim_reduced=WIDTH, num_stage=STAGES,
                              S0_kernel=1)
    if part == "nasfpn_neck":
        from models.NASFPN.builder import NASFPNNeck as Neck
        text = "SimpleDet models/NASFPN/builder.py NASFPNNeck(dim_reduced=8, num_stage=2, S0_kernel=1)"
    elif part == "nasfpn_tdbu":
        from models.FPG.builder import PAFPNNeckP3P7 as Neck
        text = "SimpleDet models/FPG/builder.py PAFPNNeckP3P7(dim_reduced=8, num_stage=2, S0_kernel=1)"
    elif part == "nasfpn_tdbu_k2":
        from models.NASFPN.builder import TopDownBottomUpFPNNeck as Neck
        text = "SimpleDet models/NASFPN/builder.py TopDownBottomUpFPNNeck(dim_reduced=8, num_stage=2, S0_kernel=1)"
    else:
        return build_retina(mx, norm, feats)
    neck = Neck(neck_param).get_rpn_feature(feats)
    names = [f"stride{s}" for s in STRIDES]
    return names, [neck[n] for n in names], text


def build_retina(mx, norm, feats):
    sys.path.insert(0, str(TOOLS))
    from make_mxnet_fixtures import reduced_width
    from models.NASFPN.builder import RetinaNetHeadWithBN, RetinaNetNeckWithBN

    with reduced_width(mx, 32):  # the neck's hard-coded 256 channels -> 8
        neck = RetinaNetNeckWithBN(_param_class("NeckParam", fp16=False, normalizer=norm)).get_rpn_feature(feats)
    anchors = _param_class("anchor_generate", scale=(4, 4 * 2 ** (1 / 3), 4 * 2 ** (2 / 3)), ratio=(0.5, 1.0, 2.0),
                           stride=STRIDES, image_anchor=None)
    head_param = _param_class("RpnParam", num_class=NUM_CLASS, fp16=False, normalizer=norm, batch_image=1,
                              anchor_generate=anchors, head=_param_class("head", conv_channel=WIDTH))
    cls, box = RetinaNetHeadWithBN(head_param).get_output(neck)
    names = [f"neck_stride{s}" for s in STRIDES] + [f"cls_stride{s}" for s in STRIDES] + \
        [f"bbox_stride{s}" for s in STRIDES]
    outputs = [neck[f"stride{s}"] for s in STRIDES] + [cls[f"stride{s}"] for s in STRIDES] + \
        [box[f"stride{s}"] for s in STRIDES]
    text = ("SimpleDet models/NASFPN/builder.py RetinaNetNeckWithBN (256 channels / 32) + "
            "RetinaNetHeadWithBN(conv_channel=8, num_class=4, 9 anchors)")
    return names, outputs, text


def init_params(sym, inputs, rng):
    shapes = {k: v.shape for k, v in inputs.items()}
    arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
    args, aux = {}, {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name in inputs:
            continue
        if name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            args[name] = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif name.endswith("_gamma"):
            args[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("_beta", "_bias")):
            args[name] = rng.normal(0, 0.2, shape)
        else:
            raise KeyError(f"no initialiser for {name}")
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        aux[name] = np.zeros(shape) if name.endswith("_moving_mean") else np.ones(shape)
    return ({k: v.astype(np.float32) for k, v in args.items()}, {k: v.astype(np.float32) for k, v in aux.items()})


def bind(mx, sym, inputs, args, aux):
    arrays = dict(args, **inputs)
    return sym.bind(mx.cpu(), {k: mx.nd.array(arrays[k]) for k in sym.list_arguments()},
                    aux_states={k: mx.nd.array(aux[k]) for k in sym.list_auxiliary_states()}, grad_req="null")


def batchnorms(sym):
    """(BN name, the index of its input among sym.get_internals()' outputs) in graph order. The
    head's shared convs give several nodes one name: the k-th node of a name is its k-th output."""
    nodes = json.loads(sym.tojson())["nodes"]
    outputs = sym.get_internals().list_outputs()
    out = []
    for node in nodes:
        if node["op"] == "BatchNorm":
            src_id = node["inputs"][0][0]
            src = nodes[src_id]
            name = src["name"] if src["op"] == "null" else src["name"] + "_output"
            k = sum(1 for other in nodes[:src_id] if other["name"] == src["name"])
            out.append((node["name"], [i for i, o in enumerate(outputs) if o == name][k]))
    return out


def calibrate(mx, group, inputs, args, aux, rng):
    """Each BN's moving statistics: those of what reaches it (BNs before it already set), perturbed.
    The head's BNs differ per level (SimpleDet's cls_conv1_bn_s8, ...), each set from its own level."""
    internals = group.get_internals()
    bns = batchnorms(group)
    probe = mx.sym.Group([internals[index] for _, index in bns])
    exe = bind(mx, probe, inputs, args, aux)
    for i, (name, _) in enumerate(bns):
        x = exe.forward(is_train=False)[i].asnumpy().astype(np.float64)
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        # at least the second moment, and a tenth of the layer's average: a channel with a spread
        # small next to its mean, or a nearly silent one, would amplify float32 rounding (P7 is 2x1)
        second = (x ** 2).mean(axis=(0, 2, 3))
        var = np.maximum(np.maximum(var, second), 0.1 * second.mean())
        aux[name + "_moving_mean"] = (mean + 0.1 * np.sqrt(var) * rng.normal(size=mean.shape)).astype(np.float32)
        aux[name + "_moving_var"] = (var * np.exp(rng.uniform(np.log(0.6), np.log(1.6), var.shape))).astype(np.float32)
        for key in (name + "_moving_mean", name + "_moving_var"):
            if key in exe.aux_dict:
                exe.aux_dict[key][:] = aux[key]
    return len(bns)


def make(mx, part, seed, out_dir, sources):
    rng = np.random.default_rng(seed)
    names, outputs, text = build(mx, part)
    group = mx.sym.Group(outputs)
    inputs = {k: rng.normal(0, 1, shape).astype(np.float32) for k, shape in C_SHAPES.items()}
    args, aux = init_params(group, inputs, rng)
    num_bns = calibrate(mx, group, inputs, args, aux, rng)
    result = [o.asnumpy() for o in bind(mx, group, inputs, args, aux).forward(is_train=False)]

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, part)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in args.items()},
                                 {k: mx.nd.array(v) for k, v in aux.items()})
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{part}-0000.params")
    meta = {"part": part, "built_by": text, "seed": seed, "mxnet": mx.__version__, "sources": sources,
            "norm": "mxnext normalizer_factory('localbn'), inference mode", "bns_calibrated": num_bns,
            "outputs": {n: list(r.shape) for n, r in zip(names, result)},
            "generator": "tools/mxnet_nasfpn_fixtures.py"}
    np.savez_compressed(out_dir / f"{part}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **inputs,
                        **{n: r.astype(np.float32) for n, r in zip(names, result)})
    print(f"{part}: {sum(v.size for v in args.values()) + sum(v.size for v in aux.values())} numbers, "
          f"{num_bns} BNs; " + ", ".join(f"{n} {r.shape[1:]} max|x| {np.abs(r).max():.3g}"
                                         for n, r in zip(names, result)))


PARTS = {"nasfpn_neck": 11, "nasfpn_tdbu": 12, "nasfpn_tdbu_k2": 13, "nasfpn_retina": 14}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(TOOLS.parent / "tests" / "fixtures" / "mxnet_made"))
    parser.add_argument("--simpledet-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    parser.add_argument("--mxnext-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    parser.add_argument("--only", nargs="*", choices=sorted(PARTS), help="parts to make (default: all)")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")  # MXNet's plain operators, no conv + BN fusion
    import mxnet as mx

    sys.path.insert(0, str(TOOLS))
    from make_mxnet_fixtures import _revision

    sources = {"simpledet": _revision(args.simpledet, args.simpledet_rev),
               "mxnext": _revision(args.mxnext, args.mxnext_rev)}
    for part in args.only or PARTS:
        make(mx, part, PARTS[part], Path(args.out), sources)


if __name__ == "__main__":
    main()
