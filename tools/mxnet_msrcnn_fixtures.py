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

import sys
import types

import numpy as np
from mxnet_head_fixture import reduced_width, run_with_random_weights, source_args, write_fixture

NAME = "maskiou_head"
SEED = 5
DIV = 32  # 256 -> 8 conv channels, 1024 -> 32 fc units
CHANNELS = 16  # of the pooled RoI features
NUM_CLASS = 1 + 4  # SimpleDet counts the background
DETECTIONS = 6
KEEP_OUTPUTS = ("iou_head_pred",)  # layers whose width is the number of classes, not a width to reduce


def main(argv=None):
    args = source_args(__doc__.split("\n\n")[0], argv)
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

    restore = reduced_width(mx, DIV, KEEP_OUTPUTS)
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
    params, (iou_pred, mask_score) = run_with_random_weights(mx, group, inputs, rng)
    meta = {"built_by": "SimpleDet models/msrcnn/builder.py MaskIoUConvHead.get_maskiou_prediction",
            "div": DIV, "channels": CHANNELS, "num_class": NUM_CLASS, "seed": SEED,
            "generator": "tools/mxnet_msrcnn_fixtures.py"}
    write_fixture(mx, args.out, NAME, params, meta, {**inputs, "iou_head_pred": iou_pred,
                                                     "maskiou_prediction": mask_score})
    print(f"{NAME}: {sum(v.size for v in params.values())} numbers; max |iou_head_pred| {np.abs(iou_pred).max():.3g}")


if __name__ == "__main__":
    main()
