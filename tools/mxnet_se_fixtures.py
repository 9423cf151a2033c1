"""Makes tests/fixtures/mxnet_made/se_*: SimpleDet's SE-ResNet v1b backbone and its SE mask head, with
BN, computed by MXNet itself at reduced size.

- se_resnet_v1b: SimpleDet's SEv2ResNetV1bFPN (models/se/builder.py: hybrid_resnet_fpn_builder of
  se_v2_resnet_v1b_unit, every unit an SE unit as config/se's num_c2..c5_block = all), with two
  units per stage (mxnext's depth table given a reduced entry: first units and residual units both
  present) and every width divided by 16. Outputs c2..c5 of one 64x64 image.
- se_mask_head: SimpleDet's MaskRcnnSe4convHead.get_output (4 x conv + BN + ReLU + SE, deconv,
  logits; dim_reduced 256 and 80 logit maps, each divided by 16) on random 16x14x14 RoI features.

The BN is mxnext's local BN (the configs' SyncBN computes the same at test time) run in inference
mode with calibrated, perturbed moving statistics (tools/make_mxnet_fixtures.py's init_params /
calibrate_bn). Widths are divided by wrapping mx.sym.Convolution and mx.sym.Deconvolution while the
network is built; the reduced graph is checked against the full-width graph the same code gives
(same nodes, names, inputs and attributes except num_filter). GroupNorm is not run here: stock
MXNet's GroupNorm has one scale per group where SimpleDet's has one per channel; the GN layers are
checked against a numpy reference in tests/test_scratch_norms.py. Plain CPU operators
(MXNET_SUBGRAPH_BACKEND=NONE).

Written per fixture NAME:
  NAME-0000.params  MXNet's Module checkpoint (arg:/aux: names)
  NAME.npz          inputs, MXNet's outputs (float32), meta (JSON: what built it, sizes, MXNet version)

Run with an MXNet 1.x Python (never a dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_se_fixtures.py \\
        --simpledet /tmp/simpledet --mxnext /tmp/mxnext --out tests/fixtures/mxnet_made

tests/test_se_resnet.py loads the files into our modules through the SimpleDet checkpoint
converter's renaming and compares the outputs; it needs no MXNet.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

DEPTH = 26  # a depth-table entry of our own: 2 bottlenecks per stage
UNITS = (2, 2, 2, 2)
DIV = 16
IMAGE_SHAPE = (1, 3, 64, 64)
HEAD_ROIS, HEAD_CHANNELS, HEAD_CLASSES = 6, 16, 80  # the logits too are divided: 5 maps
MEAN = tuple(i * 255 for i in (0.485, 0.456, 0.406))  # the configs' NormParam
STD = tuple(i * 255 for i in (0.229, 0.224, 0.225))
CALIBRATION = 16
GENERATOR = "tools/mxnet_se_fixtures.py"


def _load(name):
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params(**attrs):
    return type("Param", (), attrs)


@contextlib.contextmanager
def narrowed(mx, base, div):
    """base.reduced_width, plus the mask head's deconvolution."""
    op = mx.sym.Deconvolution

    def deconv(*args, **kwargs):
        kwargs["num_filter"] = int(kwargs["num_filter"]) // div
        return op(*args, **kwargs)

    with base.reduced_width(mx, div):
        mx.sym.Deconvolution = deconv
        try:
            yield
        finally:
            mx.sym.Deconvolution = op


def build_backbone(X, norm, narrow):
    import mxnext.backbone.resnet_v1b_helper as helper
    from models.se.builder import SEv2ResNetV1bFPN

    helper.depth_config[DEPTH] = UNITS
    with narrow:
        backbone = SEv2ResNetV1bFPN(_params(fp16=False, normalizer=norm, depth=DEPTH, num_c2_block=UNITS[0],
                                            num_c3_block=UNITS[1], num_c4_block=UNITS[2], num_c5_block=UNITS[3]))
    return list(backbone.symbol)


def build_mask_head(X, norm, narrow):
    from models.se.builder import MaskRcnnSe4convHead

    with narrow:
        head = MaskRcnnSe4convHead(_params(num_class=HEAD_CLASSES),
                                   _params(fp16=False, normalizer=norm, resolution=28, dim_reduced=256),
                                   _params(out_size=14))
        return [head.get_output(X.var("data"))]


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

    # models/se/builder.py imports the mask R-CNN builder, which imports SimpleDet's Cython NMS (for its
    # box post-processing, not used here): a stand-in module takes its place when it is not compiled
    if "operator_py.cython.cpu_nms" not in sys.modules:
        stand_in = types.ModuleType("operator_py.cython.cpu_nms")
        stand_in.greedy_nms = stand_in.soft_nms = None
        sys.modules["operator_py.cython.cpu_nms"] = stand_in
    base = _load("make_mxnet_fixtures")
    make = _load("mxnet_efficientnet_fixtures").make
    out_dir = Path(args.out)
    sources = {"simpledet": base._revision(args.simpledet, args.simpledet_rev),
               "mxnext": base._revision(args.mxnext, args.mxnext_rev)}

    rng = np.random.default_rng(21)
    images = rng.integers(0, 256, (CALIBRATION,) + IMAGE_SHAPE[1:]).astype(np.uint8)
    mean32, std32 = np.array(MEAN, np.float32).reshape(1, 3, 1, 1), np.array(STD, np.float32).reshape(1, 3, 1, 1)
    batch = (images.astype(np.float32) - mean32) / std32
    meta = {"built_by": "SimpleDet SEv2ResNetV1bFPN(local_bn), 2 SE units per stage", "units": UNITS,
            "image_shape": IMAGE_SHAPE, "sources": sources}
    result, meta = make(mx, base, "se_resnet_v1b", build_backbone, narrowed(mx, base, DIV), DIV, batch, 22, out_dir,
                        meta, first_image_only=True, generator=GENERATOR)
    names = ["c2", "c3", "c4", "c5"]
    meta["outputs"] = {n: list(r.shape) for n, r in zip(names, result)}
    np.savez_compressed(out_dir / "se_resnet_v1b.npz", image=images[:1], mean=mean32.reshape(3),
                        std=std32.reshape(3), meta=np.array(json.dumps(meta, sort_keys=True)),
                        **{n: r.astype(np.float32) for n, r in zip(names, result)})
    print("se_resnet_v1b:", ", ".join(f"{n} {tuple(r.shape[1:])} max|x| {np.abs(r).max():.3g}"
                                      for n, r in zip(names, result)), f"({meta['bns_calibrated']} BNs)")

    rng = np.random.default_rng(23)
    rois = rng.normal(0, 1, (HEAD_ROIS, HEAD_CHANNELS, 14, 14)).astype(np.float32)
    meta = {"built_by": "SimpleDet MaskRcnnSe4convHead(local_bn).get_output", "num_class": HEAD_CLASSES,
            "roi_shape": list(rois.shape), "sources": sources}
    result, meta = make(mx, base, "se_mask_head", build_mask_head, narrowed(mx, base, DIV), DIV, rois, 24, out_dir,
                        meta, first_image_only=False, generator=GENERATOR)
    np.savez_compressed(out_dir / "se_mask_head.npz", rois=rois, mask_logit=result[0].astype(np.float32),
                        meta=np.array(json.dumps(meta, sort_keys=True)))
    print("se_mask_head:", [r.shape for r in result], f"({meta['bns_calibrated']} BNs)")


if __name__ == "__main__":
    main()
