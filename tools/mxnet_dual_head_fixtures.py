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


import numpy as np
from mxnet_head_fixture import reduced_width, run_with_random_weights, source_args, write_fixture

NAME = "dual_head"
SEED = 7
DIV = 32  # 256 -> 8 conv channels, 1024 -> 32 fc units
CHANNELS = 16  # of the pooled RoI features
NUM_CLASS = 1 + 4  # SimpleDet counts the background
ROIS = 6
KEEP_OUTPUTS = ("bbox_cls_logit", "bbox_reg_delta")  # widths set by the classes, not to reduce


def main(argv=None):
    args = source_args(__doc__.split("\n\n")[0], argv)
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

    restore = reduced_width(mx, DIV, KEEP_OUTPUTS)
    cls_logit, bbox_delta = FPNBboxDualHeadSmall(BboxParam).get_output(X.var("roi_feat"))
    restore()
    group = mx.sym.Group([cls_logit, bbox_delta])

    rng = np.random.default_rng(SEED)
    roi_feat = rng.normal(0, 1, (ROIS, CHANNELS, 7, 7)).astype(np.float32)
    params, (cls_out, delta_out) = run_with_random_weights(mx, group, {"roi_feat": roi_feat}, rng)
    meta = {"built_by": "SimpleDet models/FPN/builder.py FPNBboxDualHeadSmall.get_output", "div": DIV,
            "channels": CHANNELS, "num_class": NUM_CLASS, "seed": SEED,
            "generator": "tools/mxnet_dual_head_fixtures.py"}
    write_fixture(mx, args.out, NAME, params, meta, {"roi_feat": roi_feat, "bbox_cls_logit": cls_out,
                                                     "bbox_reg_delta": delta_out})
    print(f"{NAME}: {len(params)} arrays; max |logit| {np.abs(cls_out).max():.3g}, "
          f"max |delta| {np.abs(delta_out).max():.3g}")


if __name__ == "__main__":
    main()
