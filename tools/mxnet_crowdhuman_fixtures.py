"""Makes tests/fixtures/mxnet_made/double_pred_head*: SimpleDet's double-prediction box head with its
refine module (models/crowdhuman/builder.py DoublePredFPNBbox2fcHead) computed by MXNet itself, at
reduced width.

The head is built as config/crowdhuman/doublepred_r50v1b_fpn_1x_refine.py builds it (2 classes with
background, per-class deltas, refine_mode with repeat_time 4, the frozen-BN normaliser, which adds
nothing), for 6 RoIs on random 7x7 RoI features of 16 channels: `get_output` gives both predictions,
`get_refine_output` the refined ones. Its 1024-wide fc layers (bbox_fc1, bbox_fc2, the refine's
shared fc3), written into the builder, are made DIV times narrower while it builds
(mx.sym.FullyConnected wrapped); the predictors keep their widths. Bound with random weights (fixed
seed), it gives the eight outputs.

Written: double_pred_head-0000.params (arg:/aux: names, mx.model.save_checkpoint) and
double_pred_head.npz (the RoI features, the outputs and meta JSON). Run with an MXNet 1.x Python
(never a dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_crowdhuman_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext
"""

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

NAME = "double_pred_head"
SEED = 11
DIV = 32  # 1024 -> 32 fc units
CHANNELS = 16  # of the pooled RoI features
NUM_CLASS = 1 + 1  # SimpleDet counts the background
ROIS = 6
OUTPUTS = ("cls_logit", "bbox_delta", "cls_sec_logit", "bbox_sec_delta",
           "refine_cls_logit", "refine_bbox_delta", "refine_cls_sec_logit", "refine_bbox_sec_delta")


def reduced_width(mx):
    """mx.sym.FullyConnected with 1024 units made 1024 // DIV while the builder runs."""
    fc = mx.sym.FullyConnected

    def fully_connected(*args, **kwargs):
        if kwargs.get("num_hidden") == 1024:
            kwargs["num_hidden"] //= DIV
        return fc(*args, **kwargs)

    mx.sym.FullyConnected = fully_connected
    return lambda: setattr(mx.sym, "FullyConnected", fc)


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

    # the builder module imports its training-target operators, which need SimpleDet's compiled
    # cython helpers and which the head's forward never calls: stand-ins when those are not built
    for target in ("models.crowdhuman.bbox_sec_target", "models.crowdhuman.bbox_target"):
        try:
            importlib.import_module(target)
        except ImportError:
            sys.modules[target] = types.ModuleType(target)
    from models.crowdhuman.builder import DoublePredFPNBbox2fcHead
    from mxnext.complicate import normalizer_factory

    class BboxParam:  # config/crowdhuman/doublepred_r50v1b_fpn_1x_refine.py
        fp16 = False
        normalizer = normalizer_factory(type="fixbn")
        num_class = NUM_CLASS
        image_roi = ROIS
        batch_image = 1
        repeat_time = 4
        refine_mode = True

        class regress_target:
            class_agnostic = False
            mean = (0.0, 0.0, 0.0, 0.0)
            std = (0.1, 0.1, 0.2, 0.2)

    restore = reduced_width(mx)
    head = DoublePredFPNBbox2fcHead(BboxParam)
    cls_logit, bbox_delta, cls_sec_logit, bbox_sec_delta, roi_feature = head.get_output(X.var("roi_feat"))
    refined = head.get_refine_output(roi_feature, cls_logit, bbox_delta, cls_sec_logit, bbox_sec_delta)
    restore()
    group = mx.sym.Group([cls_logit, bbox_delta, cls_sec_logit, bbox_sec_delta, *refined])

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
    outputs = {name: o.asnumpy() for name, o in zip(OUTPUTS, exe.forward(is_train=False))}

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, NAME)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{NAME}-0000.params")
    meta = {"built_by": "SimpleDet models/crowdhuman/builder.py DoublePredFPNBbox2fcHead.get_output + "
                        "get_refine_output", "div": DIV, "channels": CHANNELS, "num_class": NUM_CLASS,
            "repeat_time": 4, "seed": SEED, "mxnet": mx.__version__, "generator": "tools/mxnet_crowdhuman_fixtures.py"}
    np.savez_compressed(out_dir / f"{NAME}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), roi_feat=roi_feat,
                        **outputs)
    print(f"{NAME}: {len(params)} arrays: {', '.join(sorted(params))}; "
          + ", ".join(f"{k} {v.shape} max {np.abs(v).max():.3g}" for k, v in outputs.items()))


if __name__ == "__main__":
    main()
