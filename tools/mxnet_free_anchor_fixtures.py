"""Makes tests/fixtures/mxnet_made/free_anchor_head*: SimpleDet's FreeAnchor head and loss computed by
MXNet itself, at reduced width.

SimpleDet's own FreeAnchorRetinaNetHead (models/FreeAnchor/builder.py, on models/retinanet's
RetinaNetHead) is built with 16 channels and 4 classes over five random feature maps of 16x16 down
to 1x1 (P3-P7 of a 128 x 128 batch of 2 images). Its symbol is bound with random weights (fixed
seed) and gives:

- the head's forward outputs, class logits (N, A*C, H, W) and box deltas (N, A*4, H, W) per level;
- its training loss (`get_loss`: models/FreeAnchor/ops.py `_positive_loss` and `_negative_loss`)
  on hand-placed objects, with SimpleDet's precomputed anchors (symbol/builder.py
  add_anchor_to_arg), which are saved too.

The loss is built with two of ops.py's helpers replaced: box encoding and decoding use
torchvision's convention (no "+1" in widths, centre at x1 + w/2; docs/NOTES.md "Box coding"), as
our box coder does, and decoded boxes are not clipped to the image (our loss has no image sizes;
no box in these cases crosses the image's far side, and clipping at 0 changes the IoU of a box
only where it crosses the border). Everything else, the bags, the mean-max, the negative
part's IoU-to-probability map and argmax, the padding rules and the normalisation, is SimpleDet's code.

Written: free_anchor_head-0000.params (arg:/aux: names, mx.model.save_checkpoint) and
free_anchor_head.npz (features, outputs, anchors, gt_bbox, im_info, the two loss values and meta
JSON). Run with an MXNet 1.x Python (never a dependency of this project):

    /path/to/mxnet-venv/bin/python tools/mxnet_free_anchor_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

NAME = "free_anchor_head"
SEED = 11
CHANNELS = 16
NUM_CLASS = 1 + 4  # SimpleDet counts the background
STRIDES = (8, 16, 32, 64, 128)
IMAGE = 128  # features 16x16 (stride 8) down to 1x1 (stride 128)
BATCH = 2
# (x1, y1, x2, y2, label) per image, -1 rows are SimpleDet's padding. The corners leave no tie in IoU
# between each object's 50th and 51st anchor (MXNet's and torch's top-k may break ties differently);
# the two objects of image 0 overlap and have different classes, so the negative part's argmax
# between them matters.
GT_BBOX = np.array([[[19.7, 31.3, 71.6, 89.4, 2], [50.2, 40.9, 110.4, 100.3, 4], [-1, -1, -1, -1, -1]],
                    [[10.6, 15.2, 60.9, 49.7, 1], [-1, -1, -1, -1, -1], [-1, -1, -1, -1, -1]]], np.float32)


def rpn_param(fixbn):
    """SimpleDet's RpnParam of config/FreeAnchor/free_anchor_r50v1_fpn_1x.py at reduced size."""
    class RpnParam:
        num_class = NUM_CLASS
        fp16 = False
        normalizer = fixbn
        batch_image = BATCH

        class anchor_generate:
            scale = (4 * 2 ** 0, 4 * 2 ** (1.0 / 3.0), 4 * 2 ** (2.0 / 3.0))
            ratio = (0.5, 1.0, 2.0)
            stride = STRIDES
            max_side = IMAGE

        class anchor_assign:
            allowed_border = 9999
            bbox_thr = 0.6
            pre_anchor_top_n = 50

        class head:
            conv_channel = CHANNELS
            mean = (.0, .0, .0, .0)
            std = (0.1, 0.1, 0.2, 0.2)

        class proposal:
            pre_nms_top_n = 1000
            post_nms_top_n = None
            nms_thr = None
            min_bbox_side = None

        class focal_loss:
            alpha = 0.5
            gamma = 2.0

    return RpnParam


def torchvision_coding(ops):
    """ops.py's box encoding and decoding in torchvision's convention, without clipping."""
    def encode(F, ex_rois, gt_rois, means=(0., 0., 0., 0.), stds=(1., 1., 1., 1.)):
        ex_x1, ex_y1, ex_x2, ex_y2 = F.split(ex_rois, num_outputs=4, axis=-1)
        gt_x1, gt_y1, gt_x2, gt_y2 = F.split(gt_rois, num_outputs=4, axis=-1)
        ex_w, ex_h, gt_w, gt_h = ex_x2 - ex_x1, ex_y2 - ex_y1, gt_x2 - gt_x1, gt_y2 - gt_y1
        dx = ((gt_x1 + 0.5 * gt_w) - (ex_x1 + 0.5 * ex_w)) / ex_w
        dy = ((gt_y1 + 0.5 * gt_h) - (ex_y1 + 0.5 * ex_h)) / ex_h
        dw, dh = F.log(gt_w / ex_w), F.log(gt_h / ex_h)
        return F.concat((dx - means[0]) / stds[0], (dy - means[1]) / stds[1], (dw - means[2]) / stds[2],
                        (dh - means[3]) / stds[3], dim=-1)

    def decode(F, anchors, deltas, im_infos, means, stds, class_agnostic, bbox_decode_type="xywh"):
        assert class_agnostic and bbox_decode_type == "xywh"
        ax1, ay1, ax2, ay2 = F.split(anchors, num_outputs=4, axis=-1)
        aw, ah = ax2 - ax1, ay2 - ay1
        ax, ay = ax1 + 0.5 * aw, ay1 + 0.5 * ah
        dx, dy, dw, dh = F.split(deltas, num_outputs=4, axis=-1)
        px, py = (dx * stds[0] + means[0]) * aw + ax, (dy * stds[1] + means[1]) * ah + ay
        pw, ph = F.exp(dw * stds[2] + means[2]) * aw, F.exp(dh * stds[3] + means[3]) * ah
        return F.concat(px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph, dim=-1)

    ops._bbox_encode = encode
    ops.decode_bbox = decode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"))
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    import models.FreeAnchor.ops as ops
    import mxnet as mx
    import mxnext as X
    from models.FreeAnchor.builder import FreeAnchorRetinaNetHead
    from mxnext.complicate import normalizer_factory
    from symbol.builder import add_anchor_to_arg

    torchvision_coding(ops)
    rng = np.random.default_rng(SEED)
    param = rpn_param(normalizer_factory(type="fixbn"))
    head = FreeAnchorRetinaNetHead(param)
    feat = {f"stride{s}": X.var(f"stride{s}") for s in STRIDES}
    cls, box = head.get_output(feat)
    outputs = [cls[f"stride{s}"] for s in STRIDES] + [box[f"stride{s}"] for s in STRIDES]
    head.get_anchor()
    positive, negative = head.get_loss(feat, X.var("gt_bbox"), X.var("im_info"))
    group = mx.sym.Group(outputs + [positive, negative])

    features = {f"stride{s}": rng.normal(0, 1, (BATCH, CHANNELS, IMAGE // s, IMAGE // s)).astype(np.float32)
                for s in STRIDES}
    shapes = {k: v.shape for k, v in features.items()}
    shapes.update(gt_bbox=GT_BBOX.shape)  # im_info: read only by the clipping left out (see above)
    assert "im_info" not in group.list_arguments()
    arg_shapes, _, aux_shapes = group.infer_shape(**shapes)
    assert not aux_shapes
    params = {}
    for name, shape in zip(group.list_arguments(), arg_shapes):
        if name in shapes or name.startswith("anchor_stride"):
            continue
        if name.endswith("_weight"):  # He-normal, so the four convs neither vanish nor blow up
            params[name] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif name == "cls_pred_bias":  # around the 0.02 prior: probabilities from ~0.001 to ~0.5
            params[name] = np.log(0.02 / 0.98) + rng.normal(0, 1.0, shape)
        else:
            params[name] = rng.normal(0, 0.2, shape)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    anchors = {}
    add_anchor_to_arg(group, anchors, {}, IMAGE, STRIDES, param.anchor_generate.scale, param.anchor_generate.ratio)
    anchors = {k: v.asnumpy() for k, v in anchors.items()}
    im_info = np.array([[IMAGE, IMAGE, 1.0]] * BATCH, np.float32)
    inputs = dict(features, gt_bbox=GT_BBOX, im_info=im_info, **anchors, **params)
    exe = group.bind(mx.cpu(), {k: mx.nd.array(inputs[k]) for k in group.list_arguments()}, grad_req="null")
    result = [o.asnumpy() for o in exe.forward(is_train=False)]
    levels = len(STRIDES)
    cls_out, box_out, (pos, neg) = result[:levels], result[levels:2 * levels], result[2 * levels:]

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, NAME)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
        loaded = mx.nd.load(prefix + "-0000.params")
        for key, value in loaded.items():
            assert np.array_equal(value.asnumpy(), params[key.split(":", 1)[1]]), key
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{NAME}-0000.params")
    meta = {"built_by": "SimpleDet models/FreeAnchor/builder.py FreeAnchorRetinaNetHead: get_output, get_loss",
            "coding": "ops._bbox_encode / decode_bbox replaced: torchvision convention, no clipping",
            "channels": CHANNELS, "num_class": NUM_CLASS, "strides": list(STRIDES), "image": IMAGE, "seed": SEED,
            "mxnet": mx.__version__, "generator": "tools/mxnet_free_anchor_fixtures.py"}
    np.savez_compressed(out_dir / f"{NAME}.npz", meta=np.array(json.dumps(meta, sort_keys=True)),
                        gt_bbox=GT_BBOX, im_info=im_info, positive_loss=pos.reshape(()), negative_loss=neg.reshape(()),
                        **{f"feature_stride{s}": features[f"stride{s}"] for s in STRIDES},
                        **{f"cls_stride{s}": c for s, c in zip(STRIDES, cls_out)},
                        **{f"bbox_stride{s}": b for s, b in zip(STRIDES, box_out)},
                        **anchors)
    print(f"{NAME}: {sum(v.size for v in params.values())} numbers; positive loss {float(pos):.6g}, "
          f"negative loss {float(neg):.6g}; max |cls| {max(np.abs(c).max() for c in cls_out):.3g}, "
          f"max |bbox| {max(np.abs(b).max() for b in box_out):.3g}")


if __name__ == "__main__":
    main()
