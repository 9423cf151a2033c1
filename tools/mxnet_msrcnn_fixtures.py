"""Makes tests/fixtures/mxnet_made/maskiou_head*: SimpleDet's MaskIoU head (Mask Scoring R-CNN)
computed by MXNet itself, at reduced width.

SimpleDet's own MaskIoUConvHead (models/msrcnn/builder.py) is built with its test-time method
`get_maskiou_prediction` for 6 detections of one image, 5 classes (background included), on random
14x14 RoI features of 16 channels and random 28x28 mask probabilities of every class. Its widths
(256 for the convs, 1024 for the fcs, written into the builder) are divided by DIV while it builds:
mx.sym.Convolution / FullyConnected are wrapped (num_filter / num_hidden // DIV), all but the
per-class output `iou_head_pred`. The symbol is bound with random weights (fixed seed) and gives:

- `iou_head_pred` (6, 5): the head's per-class IoU predictions (its internal output);
- `maskiou_prediction` (1, 6, 1): the predicted IoU of each detection's class x its score.

Written: maskiou_head-0000.params (arg:/aux: names, mx.model.save_checkpoint) and maskiou_head.npz
(inputs, the two outputs and meta JSON). Run with an MXNet 1.x Python (never a dependency of this
project):

    /path/to/mxnet-venv/bin/python tools/mxnet_msrcnn_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

NAME = "maskiou_head"
SEED = 5
DIV = 32  # 256 -> 8 conv channels, 1024 -> 32 fc units
CHANNELS = 16  # of the pooled RoI features
NUM_CLASS = 1 + 4  # SimpleDet counts the background
DETECTIONS = 6
KEEP_OUTPUTS = ("iou_head_pred",)  # layers whose width is the number of classes, not a width to reduce


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

    # models/msrcnn/builder.py imports SimpleDet's Cython NMS (for its box post-processing op, not
    # used here): a stand-in module takes its place when it is not compiled
    if "operator_py.cython.cpu_nms" not in sys.modules:
        stand_in = types.ModuleType("operator_py.cython.cpu_nms")
        stand_in.greedy_nms = stand_in.soft_nms = None
        sys.modules["operator_py.cython.cpu_nms"] = stand_in
    from models.msrcnn.builder import MaskIoUConvHead

    class TestParam:
        max_det_per_image = DETECTIONS

    class BboxParam:
        num_class = NUM_CLASS
        batch_image = 1

    class MaskParam:
        resolution = 28

    restore = reduced_width(mx)
    head = MaskIoUConvHead(TestParam, BboxParam, MaskParam)
    score = head.get_maskiou_prediction(X.var("mask_prob"), X.var("conv_feat"), X.var("post_cls"),
                                        X.var("post_cls_score"))
    restore()
    group = mx.sym.Group([score.get_internals()["iou_head_pred_output"], score])

    rng = np.random.default_rng(SEED)
    inputs = {
        "conv_feat": rng.normal(0, 1, (DETECTIONS, CHANNELS, 14, 14)).astype(np.float32),
        "mask_prob": rng.uniform(0, 1, (DETECTIONS, NUM_CLASS, 28, 28)).astype(np.float32),
        # SimpleDet's post-processing gives foreground classes from 0; the head adds 1
        "post_cls": np.array([0, 3, 1, 2, 3, 0], np.float32),
        "post_cls_score": rng.uniform(0.05, 1, (DETECTIONS,)).astype(np.float32),
    }
    arg_shapes, _, aux_shapes = group.infer_shape(**{k: v.shape for k, v in inputs.items()})
    assert not aux_shapes
    params = {}
    for name, shape in zip(group.list_arguments(), arg_shapes):
        if name in inputs:
            continue
        if name.endswith("_weight"):  # He-normal: the activations keep their scale layer to layer
            params[name] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        else:
            params[name] = rng.normal(0, 0.1, shape)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    feed = {**inputs, **params}
    exe = group.bind(mx.cpu(), {k: mx.nd.array(feed[k]) for k in group.list_arguments()}, grad_req="null")
    iou_pred, mask_score = (o.asnumpy() for o in exe.forward(is_train=False))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, NAME)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{NAME}-0000.params")
    meta = {"built_by": "SimpleDet models/msrcnn/builder.py MaskIoUConvHead.get_maskiou_prediction",
            "div": DIV, "channels": CHANNELS, "num_class": NUM_CLASS, "seed": SEED, "mxnet": mx.__version__,
            "generator": "tools/mxnet_msrcnn_fixtures.py"}
    np.savez_compressed(out_dir / f"{NAME}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **inputs,
                        iou_head_pred=iou_pred, maskiou_prediction=mask_score)
    print(f"{NAME}: {sum(v.size for v in params.values())} numbers; max |iou_head_pred| {np.abs(iou_pred).max():.3g}")


if __name__ == "__main__":
    main()
