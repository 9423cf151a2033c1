"""Makes tests/fixtures/mxnet_made: SimpleDet backbones computed by MXNet itself, at reduced width.

For each backbone family SimpleDet builds (ResNet v1 MSRA, v1b, v2, ResNeXt, DCN, modulated DCN)
this script builds the MXNet symbol with SimpleDet's own builder code (mxnext's Builder classes and
SimpleDet's models/dcn/builder.py, imported from their source trees), with every channel count
divided by 16 (ResNeXt and DCN: 32) so that the files stay small; depth 50 is kept. The division is done
by wrapping mx.sym.Convolution / DeformableConvolution / ModulatedDeformableConvolution while the
builder runs (num_filter / div, num_group / div when grouped; DCN offset convs keep their channel
count, which the kernel and the deformable groups fix). The reduced graph is checked against the
full-width graph the same builder gives: same nodes, names, inputs and attributes, except
num_filter / num_group.

Weights are random (fixed seed per family) with non-trivial frozen-BN statistics: each BN's
moving mean / variance is measured on the activations that reach it (16 images, layer by layer in
graph order) and then perturbed, gamma / beta are random, and a quarter of every conv's filters are
scaled by 0.01 so that some channels have variances of 1e-4 and below, where BN's eps (1e-5)
matters. The residual branches end at 0.3x gain and DCN offsets stay below a pixel on average: a
random net without these amplifies float32 rounding so much (~3x per stage, ~4x per DCN unit) that
MXNet's own float32 outputs are only good to ~1e-3. bn_data's stored gamma is random: MXNet ignores
it (fix_gamma=True; checked here), a loader must too. All outputs come from MXNet's plain CPU
operators (MXNET_SUBGRAPH_BACKEND=NONE: no MKLDNN conv + BN fusion).

Also dcn_ops.npz: single DCNv1 / DCNv2 ops (strides, dilations, groups, deformable groups) with
offsets that reach past the border, where MXNet's two operators differ (see deform_conv.py).

Written per family NAME:
  NAME-0000.params  MXNet's Module checkpoint (mx.model.save_checkpoint: arg:/aux: names)
  NAME.npz          image (uint8, 1x3xHxW), mean / std (float32, per channel: the input is
                    (image - mean) / std in float32, as SimpleDet's NormParam), c2..c5 (MXNet's
                    outputs, float32), meta (JSON: builder, div, seed, MXNet version, sources)

Run with an MXNet 1.x Python (never a dependency of this project), e.g.

    git clone https://github.com/TuSimple/simpledet /tmp/simpledet
    git clone https://github.com/RogerChern/mxnext /tmp/mxnext
    /path/to/mxnet-venv/bin/python tools/make_mxnet_fixtures.py \
        --simpledet /tmp/simpledet --mxnext /tmp/mxnext --out tests/fixtures/mxnet_made

tests/test_mxnet_numeric.py loads the files into our backbones and compares c2..c5; it needs no MXNet.
The families (what SimpleDet builds them with):
  resnet_v1_50    mxnext resnet_v1.Builder, "msra", "fpn" endpoint (models/FPN MSRAResNet50V1FPN)
  resnet_v1b_50   mxnext resnet_v1b.Builder, "msra", "fpn" (symbol/builder.py ResNetV1bFPN)
  resnet_v2_50    mxnext resnet_v2.Builder, "mxnet", "c4c5" (MXNetResNet50V2C4C5: bn_data; stage 4 at
                  stride 1, dilation 2; c5 = relu(bn1(stage 4))); c2 / c3 are the last units' sums
  resnext_50_64x4d mxnext resnext.Builder, "mxnet", "fpn", num_group=64 (bn_data)
  dcn_v1b_50      SimpleDet models/dcn/builder.py DCNResNetFPN, num_c3_block=4 (all of stage 2, its
                  strided first unit included), num_c4_block=3 (last 3 units of stage 3)
  mdcn_v1b_50     SimpleDet's hybrid_resnet_fpn_builder with a modulated unit written here (SimpleDet
                  has none): dcn_resnet_unit with a 3x3 offset conv of 3*4*9 channels *with bias*
                  (offsets = first 72, mask = sigmoid(last 36), mmcv's / MSRA DCNv2's layout) into
                  mx.sym.contrib.ModulatedDeformableConvolution; last 3 units of stage 3
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# c2..c5 at 14x22, 7x11, 4x6, 2x3: stride-2 convs on odd sizes; conv0's 28x44 output pools to 14x22
# with MXNet's "valid" (floor) convention, 15x23 with ceil
IMAGE_SHAPE = (1, 3, 56, 88)
CALIBRATION_IMAGES = 16  # the fixture image and 15 more: the batch the BN statistics are measured on
V1_MEAN, V1_STD = (122.7717, 115.9465, 102.9801), (1.0, 1.0, 1.0)  # config/faster_r50v1_fpn_1x.py
V1B_MEAN = tuple(i * 255 for i in (0.485, 0.456, 0.406))  # config/resnet_v1b/*
V1B_STD = tuple(i * 255 for i in (0.229, 0.224, 0.225))
RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # bn_data families: 0-255 RGB, bn_data whitens
# the residual branches' last layer (bn3 gamma, v2: conv3) is scaled down, as in trained ResNets: a
# random 50-layer net with full-size branches amplifies float32 rounding ~3x per stage
RESIDUAL_GAIN = 0.3
# DCN offset convs: offsets of 0.5-0.9 px on average. Larger ones work too, but each DCN unit then
# multiplies float32 rounding by ~4 (the sampled features are rough at this size)
OFFSET_GAIN = 1.2

# name: (how SimpleDet builds it, input normalisation, channel divisor, seed). ResNeXt 64x4d is divided
# by 32 (64 -> 2 groups of 4 channels): its 1x1 convs are 2-4x wider than ResNet's, /16 would be 1.4 MB.
# The DCN families too (/16: 0.6 MB each, mostly offset convs): 4 deformable groups of 1 channel in
# stage 2, of 2 in stage 3
FAMILIES = {
    "resnet_v1_50": ("mxnext resnet_v1.Builder().get_backbone('msra', 50, 'fpn', fixbn)", (V1_MEAN, V1_STD), 16, 1),
    "resnet_v1b_50": ("mxnext resnet_v1b.Builder().get_backbone('msra', 50, 'fpn', fixbn)", (V1B_MEAN, V1B_STD),
                      16, 2),
    "resnet_v2_50": ("mxnext resnet_v2.Builder().get_backbone('mxnet', 50, 'c4c5', fixbn)", RAW, 16, 3),
    "resnext_50_64x4d": ("mxnext resnext.Builder().get_backbone('mxnet', 50, 'fpn', fixbn, 64)", RAW, 32, 4),
    "dcn_v1b_50": ("SimpleDet models/dcn/builder.py DCNResNetFPN(depth=50, num_c3_block=4, num_c4_block=3)",
                   (V1B_MEAN, V1B_STD), 32, 5),
    "mdcn_v1b_50": ("SimpleDet hybrid_resnet_fpn_builder(modulated unit, see docstring), num_c4_block=3",
                    (V1B_MEAN, V1B_STD), 32, 6),
}
_SCALED_OPS = (("sym", "Convolution"), ("sym.contrib", "DeformableConvolution"),
               ("sym.contrib", "ModulatedDeformableConvolution"))


def _resolve(mx, path):
    obj = mx
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@contextlib.contextmanager
def reduced_width(mx, div):
    """While active, convolutions built through mx.sym have num_filter / div (and num_group / div
    when grouped), except DCN offset convs (names ending in "_offset")."""
    saved = []

    def scaled(op):
        def wrapper(*args, **kwargs):
            name = kwargs.get("name") or ""
            if div != 1 and not name.endswith("_offset"):
                for key in ("num_filter", "num_group"):
                    value = int(kwargs.get(key, 1))
                    if key == "num_group" and value == 1:
                        continue
                    if value % div:
                        raise ValueError(f"{name}: {key}={value} does not divide by {div}")
                    kwargs[key] = value // div
            return op(*args, **kwargs)
        return wrapper

    for module_path, attr in _SCALED_OPS:
        module = _resolve(mx, module_path)
        saved.append((module, attr, getattr(module, attr)))
        setattr(module, attr, scaled(getattr(module, attr)))
    try:
        yield
    finally:
        for module, attr, op in saved:
            setattr(module, attr, op)


def _params(**attrs):
    """A SimpleDet config's BackboneParam class (models/dcn/builder.py reads its attributes)."""
    return type("BackboneParam", (), attrs)


def _modulated_unit(mx, X):
    def unit(input, name, filter, stride, dilate, proj, norm, **kwargs):
        # models/dcn/builder.py dcn_resnet_unit, with DCNv2's mask (written here: SimpleDet has none)
        dg, taps = 4, 9
        conv1 = X.conv(input, name=name + "_conv1", filter=filter // 4)
        bn1 = norm(conv1, name=name + "_bn1")
        relu1 = X.relu(bn1, name=name + "_relu1")
        offset_mask = X.conv(relu1, name=name + "_conv2_offset", filter=3 * dg * taps, kernel=3, stride=stride,
                             dilate=dilate, no_bias=False)
        offset = mx.sym.slice_axis(offset_mask, axis=1, begin=0, end=2 * dg * taps, name=name + "_conv2_offset_xy")
        logits = mx.sym.slice_axis(offset_mask, axis=1, begin=2 * dg * taps, end=3 * dg * taps,
                                   name=name + "_conv2_mask_logits")
        mask = mx.sym.sigmoid(logits, name=name + "_conv2_mask")
        conv2 = mx.sym.contrib.ModulatedDeformableConvolution(
            relu1, offset, mask, kernel=(3, 3), stride=(stride, stride), dilate=(dilate, dilate), pad=(1, 1),
            num_filter=filter // 4, num_deformable_group=dg, no_bias=True, name=name + "_conv2")
        bn2 = norm(conv2, name=name + "_bn2")
        relu2 = X.relu(bn2, name=name + "_relu2")
        conv3 = X.conv(relu2, name=name + "_conv3", filter=filter)
        bn3 = norm(conv3, name=name + "_bn3")
        if proj:
            shortcut = norm(X.conv(input, name=name + "_sc", filter=filter, stride=stride), name=name + "_sc_bn")
        else:
            shortcut = input
        return X.relu(X.add(bn3, shortcut, name=name + "_plus"), name=name + "_relu")
    return unit


def build_symbol(mx, family):
    """(c2, c3, c4, c5) symbols of `family`, built by SimpleDet's / mxnext's code."""
    import mxnext as X
    from mxnext.complicate import normalizer_factory

    fixbn = normalizer_factory(type="fixbn")
    if family == "resnet_v1_50":
        from mxnext.backbone.resnet_v1 import Builder
        return Builder().get_backbone("msra", 50, "fpn", fixbn, False)
    if family == "resnet_v1b_50":
        from mxnext.backbone.resnet_v1b import Builder
        return Builder().get_backbone("msra", 50, "fpn", fixbn, False)
    if family == "resnet_v2_50":
        from mxnext.backbone.resnet_v2 import Builder
        c4, c5 = Builder().get_backbone("mxnet", 50, "c4c5", fixbn, False)
        inner = c5.get_internals()
        return inner["stage1_unit3_plus_output"], inner["stage2_unit4_plus_output"], c4, c5
    if family == "resnext_50_64x4d":
        from mxnext.backbone.resnext import Builder
        return Builder().get_backbone("mxnet", 50, "fpn", fixbn, 64, False)
    if family == "dcn_v1b_50":
        from models.dcn.builder import DCNResNetFPN
        return DCNResNetFPN(_params(depth=50, normalizer=fixbn, fp16=False, num_c3_block=4, num_c4_block=3)).symbol
    if family == "mdcn_v1b_50":
        from models.dcn.builder import hybrid_resnet_fpn_builder
        backbone = hybrid_resnet_fpn_builder(_modulated_unit(mx, X))
        return backbone(_params(depth=50, normalizer=fixbn, fp16=False, num_c4_block=3)).symbol
    raise KeyError(family)


def check_same_graph(full, reduced, div):
    """The reduced graph is the full one with num_filter / num_group divided by div."""
    a, b = json.loads(full.tojson())["nodes"], json.loads(reduced.tojson())["nodes"]
    assert len(a) == len(b), (len(a), len(b))
    changed = 0
    for x, y in zip(a, b):
        assert (x["op"], x["name"], x["inputs"]) == (y["op"], y["name"], y["inputs"]), (x["name"], y["name"])
        ax, ay = dict(x.get("attrs", {})), dict(y.get("attrs", {}))
        for key in ("num_filter", "num_group"):
            if key in ax and ax[key] != ay[key]:
                assert int(ax[key]) == int(ay[key]) * div, (x["name"], key, ax[key], ay[key])
                changed += 1
            ax.pop(key, None), ay.pop(key, None)
        assert ax == ay, (x["name"], ax, ay)
    return changed


def _batchnorms(sym):
    """(BN name, the name of its input's output, fix_gamma) in graph order."""
    nodes = json.loads(sym.tojson())["nodes"]
    out = []
    for node in nodes:
        if node["op"] != "BatchNorm":
            continue
        src = nodes[node["inputs"][0][0]]
        src_name = src["name"] if src["op"] == "null" else src["name"] + "_output"
        out.append((node["name"], src_name, node["attrs"].get("fix_gamma", "True") == "True"))
    return out


def init_params(sym, shapes, rng):
    """Random weights (BN statistics placeholders, calibrated later)."""
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shapes)
    args, aux = {}, {}
    arg_names = set(sym.list_arguments())
    post_activation = "stage1_unit1_sc_bn_gamma" in arg_names
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == "data":
            continue
        if name.endswith("_offset_weight"):  # offsets below a pixel, mask logits about 1
            fan_in = int(np.prod(shape[1:]))
            args[name] = rng.normal(0, OFFSET_GAIN / np.sqrt(fan_in), shape)
        elif name.endswith("_offset_bias"):
            args[name] = rng.normal(0, 0.5, shape)
        elif name.endswith("_weight"):  # He-normal; a quarter of the filters scaled to 1%
            fan_in = int(np.prod(shape[1:]))
            w = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            w[rng.random(shape[0]) < 0.25] *= 0.01
            if name.endswith("_conv3_weight") and not post_activation:
                w *= RESIDUAL_GAIN  # v2: conv3 ends the residual branch
            args[name] = w
        elif name == "bn_data_gamma":
            args[name] = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("_bn3_gamma") and post_activation:
            args[name] = rng.uniform(0.5, 1.5, shape) * RESIDUAL_GAIN  # bn3 ends the residual branch
        elif name.endswith("_gamma"):
            args[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("_beta"):
            args[name] = rng.normal(0, 0.2, shape)
        elif name.endswith("_bias"):
            args[name] = rng.normal(0, 0.2, shape)
        else:
            raise KeyError(f"no initialiser for {name}")
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        aux[name] = np.zeros(shape) if name.endswith("_moving_mean") else np.ones(shape)
    if "bn_data_moving_mean" in aux:  # an ImageNet-like whitening of 0-255 RGB
        aux["bn_data_moving_mean"] = np.array([123.7, 116.8, 103.9]) + rng.normal(0, 2.0, 3)
        aux["bn_data_moving_var"] = np.array([58.4, 57.1, 57.4]) ** 2 * rng.uniform(0.8, 1.25, 3)
    return ({k: v.astype(np.float32) for k, v in args.items()}, {k: v.astype(np.float32) for k, v in aux.items()})


def _executor(mx, sym, data, args, aux):
    arrays = dict(args, data=data)
    return sym.bind(mx.cpu(), {k: mx.nd.array(arrays[k]) for k in sym.list_arguments()},
                    aux_states={k: mx.nd.array(aux[k]) for k in sym.list_auxiliary_states()}, grad_req="null")


def calibrate_bn(mx, outputs, batch, args, aux, rng):
    """Each BN's moving mean / var: the statistics of what reaches it (with the BNs before it
    already set), then perturbed (mean by 0.1 std, var by a factor in [0.6, 1.6])."""
    group = mx.sym.Group(list(outputs))
    internals = group.get_internals()
    bns = [bn for bn in _batchnorms(group) if bn[0] != "bn_data"]
    probe = mx.sym.Group([internals[src] for _, src, _ in bns])
    exe = _executor(mx, probe, batch, args, aux)
    for i, (name, _, _) in enumerate(bns):
        x = exe.forward(is_train=False)[i].asnumpy().astype(np.float64)
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        # a channel whose spread is tiny next to its mean would amplify float32 rounding
        var = np.maximum(var, 0.1 * (x ** 2).mean(axis=(0, 2, 3)))
        aux[name + "_moving_mean"] = (mean + 0.1 * np.sqrt(var) * rng.normal(size=mean.shape)).astype(np.float32)
        aux[name + "_moving_var"] = (var * np.exp(rng.uniform(np.log(0.6), np.log(1.6), var.shape))).astype(np.float32)
        for key in (name + "_moving_mean", name + "_moving_var"):
            if key in exe.aux_dict:  # the last BN's statistics are nobody's input
                exe.aux_dict[key][:] = aux[key]
    return [name for name, _, _ in bns]


def _revision(path, given):
    """The commit of a source tree: `given`, else what git says, else "unknown"."""
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make(mx, family, out_dir, div, sources):
    builder_text, (mean, std), family_div, seed = FAMILIES[family]
    div = div or family_div
    rng = np.random.default_rng(seed)
    full = mx.sym.Group(list(build_symbol(mx, family)))
    with reduced_width(mx, div):
        outputs = build_symbol(mx, family)
    group = mx.sym.Group(list(outputs))
    changed = check_same_graph(full, group, div)
    fix_gamma = [name for name, _, fixed in _batchnorms(group) if fixed]
    assert fix_gamma in ([], ["bn_data"]), fix_gamma  # every other BN has fix_gamma=False

    batch_shape = (CALIBRATION_IMAGES,) + IMAGE_SHAPE[1:]
    images = rng.integers(0, 256, batch_shape).astype(np.uint8)
    mean32, std32 = np.array(mean, np.float32).reshape(1, 3, 1, 1), np.array(std, np.float32).reshape(1, 3, 1, 1)
    batch = (images.astype(np.float32) - mean32) / std32
    args, aux = init_params(group, batch_shape, rng)
    calibrated = calibrate_bn(mx, outputs, batch, args, aux, rng)

    data = batch[:1]
    exe = _executor(mx, group, data, args, aux)
    result = [o.asnumpy() for o in exe.forward(is_train=False)]
    if "bn_data_gamma" in args:  # MXNet ignores bn_data's gamma (fix_gamma=True)
        ones = dict(args, bn_data_gamma=np.ones(3, np.float32))
        again = [o.asnumpy() for o in _executor(mx, group, data, ones, aux).forward(is_train=False)]
        assert all(np.array_equal(r, a) for r, a in zip(result, again)), "bn_data gamma changed the output"
        assert not np.allclose(args["bn_data_gamma"], 1)
    offsets = {}
    if family.startswith(("dcn", "mdcn")):  # how far the DCN samples move, on average
        internals = group.get_internals()
        names = [n for n in internals.list_outputs() if n.endswith("_conv2_offset_output")]
        probe = mx.sym.Group([internals[n] for n in names])
        values = [o.asnumpy() for o in _executor(mx, probe, data, args, aux).forward(is_train=False)]
        offsets = {n[: -len("_output")]: float(np.abs(v[:, : 72]).mean()) for n, v in zip(names, values)}

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, family)
        mx.model.save_checkpoint(prefix, 0, None, {k: mx.nd.array(v) for k, v in args.items()},
                                 {k: mx.nd.array(v) for k, v in aux.items()})
        loaded = mx.nd.load(prefix + "-0000.params")
        for key, value in loaded.items():  # what MXNet wrote is what was computed with
            kind, name = key.split(":", 1)
            assert np.array_equal(value.asnumpy(), (args if kind == "arg" else aux)[name]), key
        shutil.copyfile(prefix + "-0000.params", out_dir / f"{family}-0000.params")
    meta = {"family": family, "built_by": builder_text, "div": div, "seed": seed, "mxnet": mx.__version__,
            "sources": sources, "image_shape": list(IMAGE_SHAPE), "calibration_images": CALIBRATION_IMAGES,
            "convs_reduced": changed, "bns_calibrated": len(calibrated), "mean_abs_dcn_offset": offsets,
            "outputs": {f"c{i + 2}": list(r.shape) for i, r in enumerate(result)},
            "generator": "tools/make_mxnet_fixtures.py"}
    np.savez_compressed(out_dir / f"{family}.npz", image=images[:1], mean=mean32.reshape(3), std=std32.reshape(3),
                        meta=np.array(json.dumps(meta, sort_keys=True)),
                        **{f"c{i + 2}": r.astype(np.float32) for i, r in enumerate(result)})
    scales = ", ".join(f"c{i + 2} {tuple(r.shape[1:])} max|x| {np.abs(r).max():.3g}" for i, r in enumerate(result))
    params = sum(v.size for v in args.values()) + sum(v.size for v in aux.values())
    print(f"{family}: {params} numbers, {changed} convs reduced, {len(calibrated)} BNs; {scales}"
          + (f"; mean |offset| {min(offsets.values()):.2f}..{max(offsets.values()):.2f} px" if offsets else ""))


# single deformable convolutions, with offsets large enough that many points fall near or past the
# border: (modulated, in, out, deformable groups, groups, stride, dilation, height, width)
DCN_OPS = [(False, 8, 8, 4, 1, 1, 1, 7, 9), (False, 4, 6, 2, 2, 2, 2, 11, 8), (False, 4, 4, 1, 1, 1, 3, 13, 10),
           (True, 8, 4, 2, 1, 2, 1, 9, 12), (True, 4, 6, 2, 2, 1, 2, 10, 7)]


def make_dcn_ops(mx, out_dir, sources):
    """dcn_ops.npz: MXNet's DeformableConvolution (DCNv1) and ModulatedDeformableConvolution
    (DCNv2) on random inputs, offsets (std 2 px) and mask logits, pad = dilation, no bias."""
    rng = np.random.default_rng(7)
    arrays = {}
    for i, (modulated, cin, cout, dg, groups, stride, dil, h, w) in enumerate(DCN_OPS):
        out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
        x = rng.normal(size=(1, cin, h, w)).astype(np.float32)
        offset = rng.normal(0, 2.0, size=(1, 2 * dg * 9, out_h, out_w)).astype(np.float32)
        logits = rng.normal(0, 1.5, size=(1, dg * 9, out_h, out_w)).astype(np.float32)
        weight = rng.normal(0, 1.0, size=(cout, cin // groups, 3, 3)).astype(np.float32)
        common = dict(kernel=(3, 3), stride=(stride, stride), pad=(dil, dil), dilate=(dil, dil), num_filter=cout,
                      num_group=groups, num_deformable_group=dg, no_bias=True)
        if modulated:
            mask = mx.nd.sigmoid(mx.nd.array(logits))
            y = mx.nd.contrib.ModulatedDeformableConvolution(mx.nd.array(x), mx.nd.array(offset), mask,
                                                              mx.nd.array(weight), **common)
        else:
            y = mx.nd.contrib.DeformableConvolution(mx.nd.array(x), mx.nd.array(offset), mx.nd.array(weight), **common)
        arrays.update({f"{i}_x": x, f"{i}_offset": offset, f"{i}_mask_logits": logits, f"{i}_weight": weight,
                       f"{i}_y": y.asnumpy(), f"{i}_case": np.array([modulated, cin, cout, dg, groups, stride, dil])})
    meta = {"cases": "(modulated, in, out, deformable groups, groups, stride, dilation)", "mxnet": mx.__version__,
            "sources": sources, "generator": "tools/make_mxnet_fixtures.py"}
    np.savez_compressed(out_dir / "dcn_ops.npz", meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    print(f"dcn_ops: {len(DCN_OPS)} cases")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simpledet", required=True, help="a TuSimple/simpledet source tree")
    parser.add_argument("--mxnext", required=True, help="a RogerChern/mxnext source tree")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet_made"))
    parser.add_argument("--simpledet-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    parser.add_argument("--mxnext-rev", help="its commit, for the record (default: git rev-parse HEAD)")
    parser.add_argument("--div", type=int, help="channel divisor for every family (default: FAMILIES')")
    parser.add_argument("--only", nargs="*", choices=sorted(FAMILIES), help="families to make (default: all)")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.simpledet), os.path.abspath(args.mxnext)]
    # MXNet's reference operators, not the MKLDNN subgraph that fuses conv + BN for inference
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    import mxnet as mx

    sources = {"simpledet": _revision(args.simpledet, args.simpledet_rev),
               "mxnext": _revision(args.mxnext, args.mxnext_rev)}
    for family in args.only or FAMILIES:
        make(mx, family, Path(args.out), args.div, sources)
    if not args.only:
        make_dcn_ops(mx, Path(args.out), sources)


if __name__ == "__main__":
    main()
