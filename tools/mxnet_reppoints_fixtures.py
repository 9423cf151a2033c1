"""Makes tests/fixtures/mxnet_made/reppoints_head*: SimpleDet's RepPoints neck and head computed by
MXNet itself, at reduced width, and its point targets computed by SimpleDet's own point_ops.

SimpleDet's models/RepPoints/builder.py is imported from its source tree and run as SimpleDet runs
it: RepPointsNeck.get_rpn_feature on random C3-C5 (16x16, 8x8, 4x4: P3-P7 down to 1x1), then
RepPointsHead.get_output (initial points, refined points, classification, its deformable
convolutions stock mx.sym.contrib.DeformableConvolution) and get_prediction (the moment
transform, the per-level top-k and the boxes). Width: the neck's 256 filters are divided by 16
while it is built (a wrapper on mx.sym.Convolution), the head is configured with 16 channels.

GroupNorm: SimpleDet's contrib.GroupNorm is its own C++ operator (stock MXNet's GroupNorm has
per-group, not per-channel, gamma / beta). The normaliser handed to the builders here computes the
same function from stock operators: reshape to (N, G, -1), subtract the mean, divide by
sqrt(biased variance + eps), reshape back, per-channel gamma and beta; eps 1e-5 + 1e-10 as mxnext's
normalizer_factory("gn"), 8 groups of 2 channels (SimpleDet: 32 groups; the fixture's 16 channels
allow no more than 16, and 8 keeps several channels per group).

Targets: point_ops._point_target ("point", scale 4, num_pos 1 and 2) on every point against a few
objects and a padding row, and ("box", 0.5 / 0.5 / 0) on the boxes point_ops._offset_to_boxes makes
of the initial points (moment transform); the smooth L1 terms of both stages as get_loss forms them
(before SimpleDet's BBoxNorm, a C++ operator), and the inputs of its FocalLoss (also C++).

Written: reppoints_head-0000.params (arg:/aux: names, SimpleDet's) and reppoints_head.npz (inputs,
outputs, targets, meta JSON). Run with an MXNet 1.x Python (never a dependency of this project):

    /work/mxnet-venv/bin/python tools/mxnet_reppoints_fixtures.py --simpledet /tmp/sd --mxnext /tmp/mxnext \
        --out tests/fixtures/mxnet_made
"""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

NAME = "reppoints_head"
SEED = 11
NUM_CLASS = 1 + 4
CHANNELS = 16  # the head's conv and point channels; the neck's 256 / 16
GROUPS = 8
GN_EPS = 1e-5 + 1e-10
STRIDES = (8, 16, 32, 64, 128)
IMAGE = 128  # C3 16x16 ... P7 1x1
C_SHAPES = {"c3": (1, 16, 16, 16), "c4": (1, 32, 8, 8), "c5": (1, 64, 4, 4)}
PRE_NMS_TOP_N = 12  # at most P5's 16 points: MXNet's topk wants k <= the points of the level
MOMENT_TRANSFER = (0.3, -0.2)
# objects (x1, y1, x2, y2, class) in the 128 px image; the last row is padding, as SimpleDet's loader pads
GT = np.array([[10, 12, 50, 40, 1], [60, 8, 124, 100, 3], [2, 70, 20, 90, 2], [30, 30, 110, 120, 4],
               [64, 64, 72, 72, 1], [-1, -1, -1, -1, -1]], np.float32)


@contextlib.contextmanager
def neck_width(mx, div):
    """While active, convolutions with 256 filters (the neck's) get 256 / div."""
    original = mx.sym.Convolution

    def wrapper(*args, **kwargs):
        if int(kwargs.get("num_filter", 0)) == 256:
            kwargs["num_filter"] = 256 // div
        return original(*args, **kwargs)

    mx.sym.Convolution = wrapper
    try:
        yield
    finally:
        mx.sym.Convolution = original


def stock_group_norm(mx):
    """mxnext's normalizer_factory("gn") signature and names, from stock operators."""
    def gn(data, gamma=None, beta=None, name=None, **kwargs):
        name = (name or data.name + "_gn").replace("_bn", "_gn")
        gamma = mx.sym.var(name + "_gamma", shape=(CHANNELS,))
        beta = mx.sym.var(name + "_beta", shape=(CHANNELS,))
        grouped = mx.sym.reshape(data, shape=(0, GROUPS, -1))
        centred = mx.sym.broadcast_sub(grouped, mx.sym.mean(grouped, axis=2, keepdims=True))
        var = mx.sym.mean(mx.sym.square(centred), axis=2, keepdims=True)
        normed = mx.sym.reshape_like(mx.sym.broadcast_div(centred, mx.sym.sqrt(var + GN_EPS)), data)
        scaled = mx.sym.broadcast_mul(normed, mx.sym.reshape(gamma, shape=(1, -1, 1, 1)))
        return mx.sym.broadcast_add(scaled, mx.sym.reshape(beta, shape=(1, -1, 1, 1)), name=name)
    return gn


def params(**attrs):
    return type("Param", (), attrs)


def build(mx):
    from models.RepPoints.builder import RepPointsHead, RepPointsNeck

    gn = stock_group_norm(mx)
    head_param = params(
        num_class=NUM_CLASS, fp16=False, normalizer=gn, batch_image=1,
        point_generate=params(num_points=9, scale=4, stride=STRIDES, transform="moment"),
        head=params(conv_channel=CHANNELS, point_conv_channel=CHANNELS, mean=None, std=None),
        proposal=params(pre_nms_top_n=PRE_NMS_TOP_N, post_nms_top_n=None, nms_thr=None, min_bbox_side=None),
        point_target=params(target_scale=4, num_pos=1),
        bbox_target=params(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0),
        focal_loss=params(alpha=0.25, gamma=2.0))
    c3, c4, c5 = (mx.sym.var(name) for name in ("c3", "c4", "c5"))
    with neck_width(mx, 256 // CHANNELS):
        feats = RepPointsNeck(params(fp16=False, normalizer=gn)).get_rpn_feature((None, c3, c4, c5))
    head = RepPointsHead(head_param)
    inits, refines, clss = head.get_output(feats)
    cls_score, bbox_xyxy = head.get_prediction(feats, mx.sym.var("im_info"))
    outputs = {}
    for s in STRIDES:
        key = f"stride{s}"
        outputs.update({f"p_{s}": feats[key], f"pts_init_{s}": inits[key], f"pts_refine_{s}": refines[key],
                        f"cls_{s}": clss[key]})
    outputs.update(cls_score=cls_score, bbox_xyxy=bbox_xyxy)
    return outputs


def random_params(arg_shapes, rng):
    """Random weights with outputs of order one: He-scaled convs, GroupNorm gamma around 1, and
    initial points spread over a few cells (some sampled past the border)."""
    values = {}
    for name, shape in arg_shapes.items():
        if name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            gain = 1.5 if name.startswith("pts_") and name.endswith("_out_weight") else 1.0
            values[name] = rng.normal(0, gain * np.sqrt(2.0 / fan_in), shape)
        elif name.endswith("_bias"):
            values[name] = rng.normal(0, 0.1, shape)
        elif name.endswith("_gamma"):
            values[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("_beta"):
            values[name] = rng.normal(0, 0.2, shape)
        elif name == "moment_transfer":
            values[name] = np.array(MOMENT_TRANSFER)
    return {k: v.astype(np.float32) for k, v in values.items()}


def targets(mx, out, moment_transfer):
    """SimpleDet's point_ops on MXNet's own outputs: both assignments and the smooth L1 terms."""
    from models.RepPoints import point_ops as ops

    nd = mx.nd
    gt = nd.array(GT[None])
    mt = nd.array(moment_transfer)
    points, boxes, inits, refines, norms = [], [], [], [], []
    for s in STRIDES:
        init, refine = nd.array(out[f"pts_init_{s}"]), nd.array(out[f"pts_refine_{s}"])
        pts = ops._gen_points(nd, init, s)
        points.append(pts)
        boxes.append(ops._offset_to_boxes(nd, pts, init, s, "moment", moment_transfer=mt))
        inits.append(ops._offset_to_pts(nd, pts, init, s, 9))
        refines.append(ops._offset_to_pts(nd, pts, refine, s, 9))
        norms.append(nd.ones((1, pts.shape[1], 4)) * s * 4)
    points, boxes, norms = nd.concat(*points, dim=1), nd.concat(*boxes, dim=1), nd.concat(*norms, dim=1)
    result = {"gt": GT, "points": points.asnumpy()[0], "proposals": boxes.asnumpy()[0]}
    for num_pos in (1, 2):
        labels, gts, _ = ops._point_target(nd, points, gt, 1, "point", scale=4, num_pos=num_pos)
        result[f"point_labels_k{num_pos}"], result[f"point_gts_k{num_pos}"] = labels.asnumpy(), gts.asnumpy()
    init_labels, init_gts, init_weight = ops._point_target(nd, points, gt, 1, "point", scale=4, num_pos=1)
    labels, gts, weight = ops._point_target(nd, boxes, gt, 1, "box", pos_iou_thr=0.5, neg_iou_thr=0.5,
                                            min_pos_iou=0.0)
    result["iou_labels"], result["iou_gts"] = labels.asnumpy(), gts.asnumpy()
    for stage, pts, stage_gts, stage_weight in (("init", inits, init_gts, init_weight),
                                                ("refine", refines, gts, weight)):
        pts = nd.reshape(nd.concat(*pts, dim=1), (-3, -2))
        bbox = nd.reshape(ops._points2bbox(nd, pts, "moment", y_first=False, moment_transfer=mt), (-4, 1, -1, -2))
        result[f"{stage}_l1"] = (nd.smooth_l1((bbox - stage_gts) / norms, scalar=3.0) * stage_weight).asnumpy()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default="tests/fixtures/mxnet_made")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    import mxnet as mx

    rng = np.random.default_rng(SEED)
    outputs = build(mx)
    names = list(outputs)
    group = mx.sym.Group([outputs[n] for n in names])
    inputs = {k: rng.normal(0, 1, shape).astype(np.float32) for k, shape in C_SHAPES.items()}
    # no clipping inside the image: SimpleDet clips to (w - 1, h - 1), we to (w, h) (docs/NOTES.md)
    inputs["im_info"] = np.array([[1e4, 1e4, 1.0]], np.float32)
    arg_shapes, _, aux_shapes = group.infer_shape(**{k: v.shape for k, v in inputs.items()})
    shapes = dict(zip(group.list_arguments(), arg_shapes))
    args_ = random_params({k: v for k, v in shapes.items() if k not in inputs}, rng)
    assert not aux_shapes, "the head has no BN"
    exe = group.bind(mx.cpu(), {k: mx.nd.array(v) for k, v in {**inputs, **args_}.items()}, grad_req="null")
    results = {n: o.asnumpy() for n, o in zip(names, exe.forward(is_train=False))}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.model.save_checkpoint(str(out_dir / NAME), 0, None, {k: mx.nd.array(v) for k, v in args_.items()}, {})
    (out_dir / f"{NAME}-symbol.json").unlink(missing_ok=True)
    meta = {"built_by": "SimpleDet models/RepPoints/builder.py RepPointsNeck + RepPointsHead (get_output, "
                        "get_prediction), point_ops _point_target / _offset_to_boxes / _points2bbox",
            "channels": CHANNELS, "gn_groups": GROUPS, "gn": "stock composition (see the tool's docstring)",
            "num_class": NUM_CLASS, "strides": STRIDES, "pre_nms_top_n": PRE_NMS_TOP_N, "seed": SEED,
            "mxnet": mx.__version__}
    np.savez_compressed(out_dir / f"{NAME}.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **inputs,
                        **results, **targets(mx, results, args_["moment_transfer"]))
    print(f"wrote {out_dir / NAME}-0000.params and .npz")


if __name__ == "__main__":
    main()
