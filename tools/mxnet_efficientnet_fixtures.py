"""Makes tests/fixtures/mxnet_made/efficientnet_*: SimpleDet's EfficientNet backbone, its FPN neck
with BN and its 2fc box head with BN, computed by MXNet itself at reduced size.

- efficientnet_fpn: SimpleDet's own `efficientnet_fpn_builder` (models/efficientnet/builder.py,
  which picks the endpoints: stages 3, 4, 6, 9) around SimpleDet's `efficientnet_helper` with the
  B5 strides, kernels and unit types (convnormrelu, mbc1, mbc6 x 6, convnormrelu) but fewer units
  per stage (1 or 2: first units and residual units both present) and 8-32 channels, then
  SimpleDet's FPNNeck (models/FPN/builder.py) with the configs' per-GPU BN normalizer, its 256
  channels divided by 16. Outputs c2..c5 and P2..P6 of one 64x96 image.
- efficientnet_box_head: SimpleDet's Bbox2fcHead (symbol/builder.py) with the same normalizer, its
  1024-d fc layers divided by 32, and BboxHead.get_output's classifier and per-class deltas
  (5 classes with background) on random 16x7x7 RoI features.

The widths are divided by wrapping mx.sym.Convolution while the neck / head is built (as
tools/make_mxnet_fixtures.py does); the reduced graph is checked against the full-width graph the
same code gives: same nodes, names, inputs and attributes except num_filter. Weights are random
(fixed seed) with non-trivial BN statistics, measured on a batch of 16 inputs layer by layer and
then perturbed (make_mxnet_fixtures.py's init_params / calibrate_bn). Every BN runs in inference
mode (moving statistics): the local BN of the configs with is_train=False. Plain CPU operators
(MXNET_SUBGRAPH_BACKEND=NONE).

Written per fixture NAME:
  NAME-0000.params  MXNet's Module checkpoint (arg:/aux: names)
  NAME.npz          inputs, MXNet's outputs (float32), meta (JSON: what built it, sizes, MXNet version)

Run with an MXNet 1.x Python (never a dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_efficientnet_fixtures.py \\
        --simpledet /tmp/simpledet --mxnext /tmp/mxnext --out tests/fixtures/mxnet_made

tests/test_efficientnet.py loads the files into our modules (through the SimpleDet checkpoint
converter's renaming) and compares the outputs; it needs no MXNet.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

# EfficientNet-B5's layout (models/efficientnet/builder.py efficientnet_b5) at reduced depth and width
REPEATS = (1, 2, 2, 2, 1, 2, 1, 1, 1)
CHANNELS = (8, 8, 8, 12, 12, 16, 16, 16, 32)
B5_STRIDES = (2, 1, 2, 2, 2, 1, 2, 1, 1)
B5_KERNELS = (3, 3, 3, 5, 3, 5, 5, 3, 1)
IMAGE_SHAPE = (1, 3, 64, 96)  # c2..c5 at 16x24, 8x12, 4x6, 2x3; P6 1x2
NECK_DIV = 16  # FPN: 256 -> 16 channels
HEAD_DIV = 32  # 2fc head: 1024 -> 32
HEAD_ROIS, HEAD_CHANNELS, HEAD_CLASSES = 24, 16, 5
MEAN = tuple(i * 255 for i in (0.485, 0.456, 0.406))  # the configs' NormParam
STD = tuple(i * 255 for i in (0.229, 0.224, 0.225))
CALIBRATION = 16


GENERATOR = "tools/mxnet_efficientnet_fixtures.py"

def _base():
    """tools/make_mxnet_fixtures.py, for its width wrapper, graph check and BN calibration."""
    path = Path(__file__).resolve().parent / "make_mxnet_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_mxnet_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params(**attrs):
    return type("Param", (), attrs)


def build_backbone_and_neck(X, norm, narrow):
    """(c2, c3, c4, c5, p2, p3, p4, p5, p6) by SimpleDet's code; the neck is built inside `narrow`."""
    from models.efficientnet import builder as effnet
    from models.FPN.builder import FPNNeck

    cs = [effnet.convnormrelu, effnet.mbc1] + [effnet.mbc6] * 6 + [effnet.convnormrelu]
    fis = [0] + list(CHANNELS[:-1])

    def reduced_b5(data, norm, **kwargs):
        return effnet.efficientnet_helper(data, norm, list(REPEATS), list(CHANNELS), fis, list(B5_STRIDES),
                                          list(B5_KERNELS), cs)

    backbone = effnet.efficientnet_fpn_builder(reduced_b5)(_params(fp16=False, normalizer=norm))
    with narrow:
        neck = FPNNeck(_params(fp16=False, normalizer=norm))
        fpn = neck.get_rpn_feature(backbone.get_rpn_feature())
    return list(backbone.symbol) + [fpn[f"stride{s}"] for s in (4, 8, 16, 32, 64)]


def build_box_head(X, norm, narrow):
    """(cls_logit, bbox_delta) of SimpleDet's Bbox2fcHead on a RoI feature variable, built inside `narrow`."""
    from symbol.builder import Bbox2fcHead

    with narrow:
        head = Bbox2fcHead(_params(fp16=False, normalizer=norm, num_class=HEAD_CLASSES,
                                   regress_target=_params(class_agnostic=False)))
        return list(head.get_output(X.var("data")))


def _save(mx, base, name, args, aux, out_dir):
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, name)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in args.items()},
                                 {k: mx.nd.array(v) for k, v in aux.items()})
        for key, value in mx.nd.load(prefix + "-0000.params").items():
            kind, param = key.split(":", 1)
            assert np.array_equal(value.asnumpy(), (args if kind == "arg" else aux)[param]), key
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{name}-0000.params")


def make(mx, base, name, build, narrow, div, batch, seed, out_dir, meta, *, first_image_only, generator):
    """The symbol `build` makes, at full width (only checked) and narrowed by the `narrow` context
    (widths divided by `div`), bound with random weights, its BN statistics calibrated on `batch`,
    run on `batch` (or its first image), its parameters saved; also used by mxnet_se_fixtures.py."""
    import mxnext as X
    from mxnext.complicate import normalizer_factory

    # the configs' normalizer (per-GPU BN); is_train=False below makes it use the moving statistics
    norm = normalizer_factory(type="localbn")
    full = mx.sym.Group(build(X, norm, contextlib.nullcontext()))
    outputs = build(X, norm, narrow)
    group = mx.sym.Group(outputs)
    changed = base.check_same_graph(full, group, div)
    assert all(not fixed for _, _, fixed in base._batchnorms(group))  # every BN has fix_gamma=False
    rng = np.random.default_rng(seed)
    args, aux = base.init_params(group, batch.shape, rng)
    calibrated = base.calibrate_bn(mx, outputs, batch, args, aux, rng)
    data = batch[:1] if first_image_only else batch
    result = [o.asnumpy() for o in base._executor(mx, group, data, args, aux).forward(is_train=False)]
    out_dir.mkdir(parents=True, exist_ok=True)
    _save(mx, base, name, args, aux, out_dir)
    meta = dict(meta, fixture=name, seed=seed, div=div, convs_reduced=changed, bns_calibrated=len(calibrated),
                mxnet=mx.__version__, generator=generator)
    return result, meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"))
    parser.add_argument("--simpledet-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    parser.add_argument("--mxnext-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    import mxnet as mx

    base = _base()
    out_dir = Path(args.out)
    sources = {"simpledet": base._revision(args.simpledet, args.simpledet_rev),
               "mxnext": base._revision(args.mxnext, args.mxnext_rev)}

    # backbone + neck, on (image - mean) / std of 0-255 RGB, as the configs' Norm2DImage
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (CALIBRATION,) + IMAGE_SHAPE[1:]).astype(np.uint8)
    mean32, std32 = np.array(MEAN, np.float32).reshape(1, 3, 1, 1), np.array(STD, np.float32).reshape(1, 3, 1, 1)
    batch = (images.astype(np.float32) - mean32) / std32
    meta = {"built_by": "SimpleDet efficientnet_fpn_builder(efficientnet_helper(reduced B5)) + FPNNeck(local_bn)",
            "repeats": REPEATS, "channels": CHANNELS, "strides": B5_STRIDES, "kernels": B5_KERNELS,
            "image_shape": IMAGE_SHAPE, "sources": sources}
    result, meta = make(mx, base, "efficientnet_fpn", build_backbone_and_neck, base.reduced_width(mx, NECK_DIV),
                        NECK_DIV, batch, 12, out_dir, meta, first_image_only=True, generator=GENERATOR)
    names = ["c2", "c3", "c4", "c5", "p2", "p3", "p4", "p5", "p6"]
    meta["outputs"] = {n: list(r.shape) for n, r in zip(names, result)}
    np.savez_compressed(out_dir / "efficientnet_fpn.npz", image=images[:1], mean=mean32.reshape(3),
                        std=std32.reshape(3), meta=np.array(json.dumps(meta, sort_keys=True)),
                        **{n: r.astype(np.float32) for n, r in zip(names, result)})
    print("efficientnet_fpn:", ", ".join(f"{n} {tuple(r.shape[1:])} max|x| {np.abs(r).max():.3g}"
                                         for n, r in zip(names, result)), f"({meta['bns_calibrated']} BNs)")

    # box head on random RoI features (all 24 RoIs are the fixture's input)
    rng = np.random.default_rng(13)
    rois = rng.normal(0, 1, (HEAD_ROIS, HEAD_CHANNELS, 7, 7)).astype(np.float32)
    meta = {"built_by": "SimpleDet Bbox2fcHead(local_bn).get_output", "num_class": HEAD_CLASSES,
            "roi_shape": list(rois.shape), "sources": sources}
    result, meta = make(mx, base, "efficientnet_box_head", build_box_head, base.reduced_width(mx, HEAD_DIV),
                        HEAD_DIV, rois, 14, out_dir, meta, first_image_only=False, generator=GENERATOR)
    np.savez_compressed(out_dir / "efficientnet_box_head.npz", rois=rois, cls_logit=result[0].astype(np.float32),
                        bbox_delta=result[1].astype(np.float32), meta=np.array(json.dumps(meta, sort_keys=True)))
    print("efficientnet_box_head:", [r.shape for r in result], f"({meta['bns_calibrated']} BNs)")


if __name__ == "__main__":
    main()
