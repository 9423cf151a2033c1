"""Makes tests/fixtures/mxnet_made/fpg_*: SimpleDet's FPG and PAFPN necks computed by MXNet itself.

The necks are built by SimpleDet's own classes (models/FPG/builder.py FPGNeckP2P6 and
PAFPNNeckP2P6, imported from a SimpleDet tree, with mxnext from its tree) on four random feature
maps c2..c5 at reduced width, then run by MXNet's CPU operators. The configs' SyncBN is replaced
by mxnext's fixbn normaliser (BatchNorm with use_global_stats, the same eps): SyncBN's function at
test time. Parameters are random with a fixed seed, BN statistics and affine parameters included
(means away from 0, variances away from 1), so every BN's arithmetic shows in the outputs.

Written per neck NAME (fpg_grid, fpg_pafpn):
  NAME-0000.params  MXNet's Module checkpoint (mx.model.save_checkpoint: arg:/aux: names)
  NAME.npz          c2..c5 (inputs), p2..p6 (MXNet's outputs, stride4..stride64), meta (JSON:
                    builder, NeckParam, shapes, seed, MXNet version, sources)

Feature sizes 16x12, 8x6, 4x3, 2x2 (C6 1x1): odd sizes, so that the upsampled maps are cropped
(slice_like) and the stride-2 convs and pools round up.

Run with an MXNet 1.x Python (never a dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_fpg_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext

tests/test_fpg.py loads the files into our necks (through the SimpleDet checkpoint converter's
name rules) and compares p2..p6; it needs no MXNet.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BATCH = 2
IN_CHANNELS = (16, 24, 32, 40)  # c2..c5 at reduced width (ResNet-50: 256, 512, 1024, 2048)
SIZES = ((16, 12), (8, 6), (4, 3), (2, 2))
# (builder class, dim_reduced, num_stage): small enough for files of ~100 KB, deep enough that
# every pathway runs at a stage > 1 (FPG's names change with the stage)
NECKS = {
    "fpg_grid": ("FPGNeckP2P6", 8, 3),
    "fpg_pafpn": ("PAFPNNeckP2P6", 12, 3),
}
SEED = 20200408


def _revision(path, given):
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _random_params(mx, sym, shapes, rng):
    arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
    args, aux = {}, {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name in shapes:
            continue
        if name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            args[name] = rng.uniform(-1, 1, shape) * np.sqrt(3.0 / fan_in)
        elif name.endswith("_gamma"):
            args[name] = rng.uniform(0.5, 1.5, shape)
        else:  # conv biases, BN betas
            args[name] = rng.normal(0, 0.2, shape)
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        if name.endswith("_moving_mean"):
            aux[name] = rng.normal(0, 0.5, shape)
        else:
            aux[name] = rng.uniform(0.3, 3.0, shape)
    cast = {k: v.astype(np.float32) for k, v in args.items()}
    return cast, {k: v.astype(np.float32) for k, v in aux.items()}


def make(mx, name, out_dir, sources):
    from models.FPG import builder
    from mxnext.complicate import normalizer_factory

    class_name, dim_reduced, num_stage = NECKS[name]

    class NeckParam:
        fp16 = False
        normalizer = normalizer_factory(type="fixbn")  # SyncBN at test time
        S0_kernel = 1

    NeckParam.dim_reduced = dim_reduced
    NeckParam.num_stage = num_stage
    neck = getattr(builder, class_name)(NeckParam)
    inputs = [mx.sym.var(f"c{i + 2}") for i in range(4)]
    out = neck.get_rpn_feature(inputs)
    group = mx.sym.Group([out[f"stride{s}"] for s in (4, 8, 16, 32, 64)])
    shapes = {f"c{i + 2}": (BATCH, c, h, w) for i, (c, (h, w)) in enumerate(zip(IN_CHANNELS, SIZES))}

    rng = np.random.RandomState(SEED)
    args, aux = _random_params(mx, group, shapes, rng)
    data = {k: rng.normal(0, 1, s).astype(np.float32) for k, s in shapes.items()}
    exe = group.bind(mx.cpu(), {**{k: mx.nd.array(v) for k, v in data.items()},
                                **{k: mx.nd.array(v) for k, v in args.items()}},
                     aux_states={k: mx.nd.array(v) for k, v in aux.items()}, grad_req="null")
    result = [o.asnumpy() for o in exe.forward(is_train=False)]

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, name)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in args.items()},
                                 {k: mx.nd.array(v) for k, v in aux.items()})
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{name}-0000.params")
    meta = {"neck": name, "built_by": f"SimpleDet models/FPG/builder.py {class_name}",
            "neck_param": {"dim_reduced": dim_reduced, "num_stage": num_stage, "S0_kernel": 1,
                           "normalizer": "mxnext normalizer_factory('fixbn')"},
            "inputs": {k: list(v) for k, v in shapes.items()}, "seed": SEED, "mxnet": mx.__version__,
            "sources": sources, "generator": "tools/mxnet_fpg_fixtures.py",
            "outputs": {f"p{i + 2}": list(r.shape) for i, r in enumerate(result)}}
    np.savez_compressed(out_dir / f"{name}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **data,
                        **{f"p{i + 2}": r.astype(np.float32) for i, r in enumerate(result)})
    scales = ", ".join(f"p{i + 2} {tuple(r.shape[1:])} std {r.std():.3g}" for i, r in enumerate(result))
    print(f"{name}: {len(args)} args, {len(aux)} aux; {scales}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"))
    parser.add_argument("--simpledet-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    parser.add_argument("--mxnext-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")  # MXNet's reference operators
    import mxnet as mx

    sources = {"simpledet": _revision(args.simpledet, args.simpledet_rev),
               "mxnext": _revision(args.mxnext, args.mxnext_rev)}
    for name in NECKS:
        make(mx, name, Path(args.out), sources)


if __name__ == "__main__":
    main()
