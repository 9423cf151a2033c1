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

import importlib
import sys
import types

import numpy as np
from mxnet_head_fixture import reduced_width, run_with_random_weights, source_args, write_fixture

NAME = "double_pred_head"
SEED = 11
DIV = 32  # 1024 -> 32 fc units
CHANNELS = 16  # of the pooled RoI features
NUM_CLASS = 1 + 1  # SimpleDet counts the background
ROIS = 6
OUTPUTS = ("cls_logit", "bbox_delta", "cls_sec_logit", "bbox_sec_delta",
           "refine_cls_logit", "refine_bbox_delta", "refine_cls_sec_logit", "refine_bbox_sec_delta")


def main(argv=None):
    args = source_args(__doc__.split("\n\n")[0], argv)
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

    restore = reduced_width(mx, DIV, convs=False, fc_width=1024)  # the 1024-wide fc layers only
    head = DoublePredFPNBbox2fcHead(BboxParam)
    cls_logit, bbox_delta, cls_sec_logit, bbox_sec_delta, roi_feature = head.get_output(X.var("roi_feat"))
    refined = head.get_refine_output(roi_feature, cls_logit, bbox_delta, cls_sec_logit, bbox_sec_delta)
    restore()
    group = mx.sym.Group([cls_logit, bbox_delta, cls_sec_logit, bbox_sec_delta, *refined])

    rng = np.random.default_rng(SEED)
    roi_feat = rng.normal(0, 1, (ROIS, CHANNELS, 7, 7)).astype(np.float32)
    params, results = run_with_random_weights(mx, group, {"roi_feat": roi_feat}, rng)
    outputs = dict(zip(OUTPUTS, results))
    meta = {"built_by": "SimpleDet models/crowdhuman/builder.py DoublePredFPNBbox2fcHead.get_output + "
                        "get_refine_output", "div": DIV, "channels": CHANNELS, "num_class": NUM_CLASS,
            "repeat_time": 4, "seed": SEED, "generator": "tools/mxnet_crowdhuman_fixtures.py"}
    write_fixture(mx, args.out, NAME, params, meta, {"roi_feat": roi_feat, **outputs})
    print(f"{NAME}: {len(params)} arrays: {', '.join(sorted(params))}; "
          + ", ".join(f"{k} {v.shape} max {np.abs(v).max():.3g}" for k, v in outputs.items()))


if __name__ == "__main__":
    main()
