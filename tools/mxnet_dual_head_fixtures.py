"""Makes tests/fixtures/mxnet_made/dual_head*: SimpleDet's dual box head (FPNBboxDualHeadSmall)
computed by MXNet itself, at reduced width.

SimpleDet's own FPNBboxDualHeadSmall (models/FPN/builder.py, on symbol/builder.py's BboxHead) is
built with its `get_output` for 6 RoIs, 5 classes (background included) and per-class box deltas,
on random 7x7 RoI features of 16 channels, with the frozen-BN normaliser of its config (which adds
nothing). Its widths (256 for the regression convs, 1024 for the classification fcs, written into
the builder) are divided by DIV while it builds: mx.sym.Convolution / FullyConnected are wrapped
(num_filter / num_hidden // DIV), all but the outputs `bbox_cls_logit` and `bbox_reg_delta`. The
symbol is bound with random weights (fixed seed) and gives the class logits (6, 5) and the box
deltas (6, 20).

Written: dual_head-0000.params (arg:/aux: names, mx.model.save_checkpoint) and dual_head.npz
(the RoI features, the two outputs and meta JSON). Run with an MXNet 1.x Python (never a
dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_dual_head_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

NAME = "dual_head"
SEED = 7
DIV = 32  # 256 -> 8 conv channels, 1024 -> 32 fc units
CHANNELS = 16  # of the pooled RoI features
NUM_CLASS = 1 + 4  # SimpleDet counts the background
ROIS = 6
KEEP_OUTPUTS = ("bbox_cls_logit", "bbox_reg_delta")  # widths set by the classes, not to reduce


def reduced_width(mx):
    """mx.sym.Convolution / FullyConnected with their widths divided by DIV while the builder runs."""
    conv, fc = mx.sym.Convolution, mx.sym.FullyConnected

    def convolution(*args, **kwargs):
        kwargs["num_filter"] //= DIV
        return conv(*args, **kwargs)

    def fully_connected(*args, **kwargs):
        if kwargs.get("name") not in KEEP_OUTPUTS:
            kwargs["num_hidden"] //= DIV
        return fc(*args, **kwargs)

    mx.sym.Convolution, mx.sym.FullyConnected = convolution, fully_connected
    return lambda: (setattr(mx.sym, "Convolution", conv), setattr(mx.sym, "FullyConnected", fc))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"))
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    import mxnet as mx
    import mxnext as X
    from models.FPN.builder import FPNBboxDualHeadSmall
    from mxnext.complicate import normalizer_factory

    class BboxParam:  # config/resnet_v1b/faster_r50v1b_fpn_dualheadsmall_1x.py, fewer classes
        fp16 = False
        normalizer = normalizer_factory(type="fixbn")
        num_class = NUM_CLASS
        image_roi = ROIS
        batch_image = 1

        class regress_target:
            class_agnostic = False
            mean = (0.0, 0.0, 0.0, 0.0)
            std = (0.1, 0.1, 0.2, 0.2)

    restore = reduced_width(mx)
    cls_logit, bbox_delta = FPNBboxDualHeadSmall(BboxParam).get_output(X.var("roi_feat"))
    restore()
    group = mx.sym.Group([cls_logit, bbox_delta])

    rng = np.random.default_rng(SEED)
    roi_feat = rng.normal(0, 1, (ROIS, CHANNELS, 7, 7)).astype(np.float32)
    arg_shapes, _, aux_shapes = group.infer_shape(roi_feat=roi_feat.shape)
    assert not aux_shapes
    params = {}
    for name, shape in zip(group.list_arguments(), arg_shapes):
        if name == "roi_feat":
            continue
        if name.endswith("_weight"):  # He-normal: the activations keep their scale layer to layer
            params[name] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        else:
            params[name] = rng.normal(0, 0.1, shape)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    feed = {"roi_feat": roi_feat, **params}
    exe = group.bind(mx.cpu(), {k: mx.nd.array(feed[k]) for k in group.list_arguments()}, grad_req="null")
    cls_out, delta_out = (o.asnumpy() for o in exe.forward(is_train=False))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, NAME)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{NAME}-0000.params")
    meta = {"built_by": "SimpleDet models/FPN/builder.py FPNBboxDualHeadSmall.get_output", "div": DIV,
            "channels": CHANNELS, "num_class": NUM_CLASS, "seed": SEED, "mxnet": mx.__version__,
            "generator": "tools/mxnet_dual_head_fixtures.py"}
    np.savez_compressed(out_dir / f"{NAME}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), roi_feat=roi_feat,
                        bbox_cls_logit=cls_out, bbox_reg_delta=delta_out)
    print(f"{NAME}: {len(params)} arrays; max |logit| {np.abs(cls_out).max():.3g}, "
          f"max |delta| {np.abs(delta_out).max():.3g}")


if __name__ == "__main__":
    main()
