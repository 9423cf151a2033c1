"""Name-and-shape manifests of SimpleDet's own test-time networks (fixture generator).

Run with a Python that has MXNet 1.x (never a dependency of this project), e.g.

    /work/mxnet-venv/bin/python tools/simpledet_manifests.py            # every config of ours
    /work/mxnet-venv/bin/python tools/simpledet_manifests.py faster_r50v1_fpn_1x dcn/faster_dcn_r50v1bc4_c5_512roi_1x

For every config of ours, configs/X.py, that SimpleDet has too (config/X.py), this imports SimpleDet's
config, builds `pModel.test_symbol` from `get_config(is_train=False)` (what detection_test.py and
detection_infer_speed.py run), infers its shapes for data (1, 3, 800, 1216), im_info (1, 3),
im_id (1,), rec_id (1,) and writes tests/fixtures/simpledet_manifests/X.json:

    {"source": "TuSimple/simpledet@<commit> config/X.py (mxnext@<commit>, mxnet <version>)",
     "arg": {name: shape}, "aux": {name: shape}}

`arg` leaves out the data inputs (data, im_info, im_id, rec_id); it keeps the precomputed anchors
(`anchor_stride*`, variables of the symbol that SimpleDet fills by process_weight). Each config is
built in a fresh subprocess: SimpleDet's detectors cache their RPN output in class attributes.

SimpleDet's own C++ operators (operator_cxx, built into SimpleDet's MXNet fork) are not in stock
MXNet. Those a test network uses are registered as shape-only stand-ins (an `mx.sym.Custom`
operator that infers the output shapes the C++ operator declares, consuming the same inputs, never
run): contrib.Proposal (SimpleDet's fork replaces stock MXNet's, whose outputs differ) and
contrib.Proposal_v3 ((N, post_nms_top_n, 4) and (N, post_nms_top_n, 1)), contrib.ROIAlign_v2
((N, R, C, ph, pw)), and, should a symbol need them, contrib.Proposal_v2, BBoxNorm, FocalLoss,
DecodeBBox, GenAnchor. None has parameters, so the names and shapes recorded are exactly those of
SimpleDet's network (each manifest's "source" names the stand-ins its symbol used). Python
operators (operator_py, mxnext.tvm) are SimpleDet's own. The data pipeline the configs import but a
symbol never calls (cv2, pycocotools, SimpleDet's compiled Cython box overlaps / NMS) is replaced
by empty modules when absent. No config needed infer_shape_partial: all 65 infer completely.

Comparison with the shared name manifests (../shared/fixtures/simpledet/detectors/X.json, names
only; per config in tests/fixtures/simpledet_manifests/README.md, rewritten by `--compare`): of 65,
26 list exactly SimpleDet's names, 39 differ, in four ways, each proven by the generated manifest:
- 24 ResNet-50 configs (all but the four R50 RetinaNets): shared lists stage3_unit1..23
  (ResNet-101's depth), SimpleDet's config builds 6 ("faster_r50v1_fpn_1x: shared lists 23 stage3
  units, SimpleDet's config builds 6");
- 22 C4 / C5-red configs (faster_*c4_c5_*, dcn/*, cascade_*_c5_red; not TridentNet): shared lists
  the FPN neck and FPN RPN (P2-P5 lateral / conv, rpn_conv, rpn_conv_cls, rpn_conv_bbox) and lacks
  the network's own RPN (rpn_conv_3x3, rpn_cls_logit, rpn_bbox_delta);
- 8 ResNet-v2 configs: shared lists stageN_unit1_sc_bn_* (a v1 shortcut BN) which mxnext's
  resnet_v2 (a bare shortcut conv) has not;
- 24 (those 22 and the two KD Faster R-CNNs): shared lists anchor_stride4/8/16, variables only
  FPNRpnHead with RpnParam.nnvm_proposal creates.
The 26 others (R101 / R152 Faster and Mask FPN, R101 / R152 v1b TridentNet, all RetinaNets,
cascade_r101v1_fpn_1x) agree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "simpledet_manifests"
SHARED = REPO.parent / "shared" / "fixtures" / "simpledet" / "detectors"
SIMPLEDET_GIT = Path("/work/.mirror/TuSimple+simpledet/repo/.git")
MXNEXT_GIT = Path("/work/.mirror/RogerChern+mxnext/repo/.git")
DATA_SHAPES = {"data": (1, 3, 800, 1216), "im_info": (1, 3), "im_id": (1,), "rec_id": (1,)}


# ---------------------------------------------------------------- in the child: stand-ins, build

def _register_standins():
    import mxnet as mx

    def _shape(s):
        return tuple(int(x) for x in s)

    def proposal(ins, p):
        n, post = ins[0][0], int(p["rpn_post_nms_top_n"])
        outs = [(n, post, 4)]
        if str(p.get("output_score", "False")).lower() in ("true", "1"):
            outs.append((n, post, 1))
        return outs

    def roi_align(ins, p):
        ph, pw = (int(x) for x in re.findall(r"\d+", str(p["pooled_size"])))
        rois = ins[1]
        return [(rois[0], rois[1], ins[0][1], ph, pw)]

    def gen_anchor(ins, p):
        n_anchor = len(re.findall(r"[\d.]+", str(p["scales"]))) * len(re.findall(r"[\d.]+", str(p["ratios"])))
        return [(ins[0][2] * ins[0][3] * n_anchor, 4)]

    def decode_bbox(ins, p):
        return [(ins[1][0], ins[1][1], 4)]

    rules = {"proposal": proposal, "roi_align": roi_align, "same": lambda ins, p: [ins[0]],
             "group_norm": lambda ins, p: [ins[0]],
             "gen_anchor": gen_anchor, "decode_bbox": decode_bbox}

    class StandIn(mx.operator.CustomOp):
        def forward(self, is_train, req, in_data, out_data, aux):
            raise RuntimeError("shape-only stand-in for a SimpleDet C++ operator")

        def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
            raise RuntimeError("shape-only stand-in for a SimpleDet C++ operator")

    @mx.operator.register("simpledet_standin")
    class StandInProp(mx.operator.CustomOpProp):
        def __init__(self, rule, stands_for, inputs, outputs, params):
            super().__init__(need_top_grad=False)
            self.rule = rule
            self.inputs = inputs.split(",")
            self.outputs = outputs.split(",")
            self.params = json.loads(params)

        def list_arguments(self):
            return self.inputs

        def list_outputs(self):
            return self.outputs

        def infer_shape(self, in_shape):
            ins = [_shape(s) for s in in_shape]
            outs = rules[self.rule](ins, self.params)
            if self.rule == "group_norm":  # SimpleDet's GroupNorm: gamma and beta per channel
                in_shape = [in_shape[0], [ins[0][1]], [ins[0][1]]]
            return in_shape, outs[: len(self.outputs)], []

        def create_operator(self, ctx, shapes, dtypes):
            return StandIn()

    def standin(stands_for, rule, inputs, outputs):
        def op(*args, name=None, **kwargs):
            data = list(args) + [kwargs.pop(k) for k in inputs[len(args):] if k in kwargs]
            # an input passed as None is a parameter the operator creates (GroupNorm's gamma / beta)
            data = [mx.sym.var(f"{name}_{inputs[i]}") if d is None else d for i, d in enumerate(data)]
            outs = outputs
            if rule == "proposal" and str(kwargs.get("output_score", False)).lower() not in ("true", "1"):
                outs = outputs[:1]
            params = json.dumps({k: str(v) for k, v in kwargs.items()})
            return mx.sym.Custom(*data, op_type="simpledet_standin", name=name, rule=rule,
                                 stands_for=stands_for,
                                 inputs=",".join(inputs[: len(data)]), outputs=",".join(outs), params=params)
        op.__name__ = rule
        return op

    contrib = mx.sym.contrib
    stand_ins = {
        # SimpleDet's fork replaces stock contrib.Proposal ((N * post, 5)) by its own (operator_cxx/
        # contrib/proposal-inl.h: (N, post, 4) and (N, post, 1)): always stood in
        "Proposal": standin("Proposal", "proposal", ["cls_prob", "bbox_pred", "im_info"], ["output", "score"]),
        "Proposal_v2": standin("Proposal_v2", "proposal", ["cls_prob", "bbox_pred", "im_info", "valid_ranges"],
                               ["output", "score"]),
        "Proposal_v3": standin("Proposal_v3", "proposal", ["cls_prob", "bbox_pred", "im_info"], ["output", "score"]),
        "ROIAlign_v2": standin("ROIAlign_v2", "roi_align", ["data", "rois"], ["output"]),
        "BBoxNorm": standin("BBoxNorm", "same", ["data", "label"], ["output"]),
        "FocalLoss": standin("FocalLoss", "same", ["data", "label"], ["output"]),
        "DecodeBBox": standin("DecodeBBox", "decode_bbox", ["rois", "bbox_pred", "im_info"], ["output"]),
        "GenAnchor": standin("GenAnchor", "gen_anchor", ["cls_prob"], ["output"]),
        # operator_cxx/contrib/group_norm: gamma / beta (C,), where stock MXNet's GroupNorm has (groups,)
        "GroupNorm": standin("GroupNorm", "group_norm", ["data", "gamma", "beta"], ["output"]),
    }
    added = []
    # SimpleDet's fork accepts concat(..., axis=); stock MXNet names it dim
    # (models/crowdhuman/builder.py)
    stock_concat = mx.sym.concat

    def concat(*args, axis=None, **kwargs):
        if axis is not None:
            kwargs["dim"] = axis
        return stock_concat(*args, **kwargs)
    mx.sym.concat = concat
    for name, op in stand_ins.items():
        if name == "Proposal" or not hasattr(contrib, name):
            setattr(contrib, name, op)
            added.append(name)
    return added


def _stub_data_modules():
    """SimpleDet's configs import its data pipeline (core.detection_input: cv2, the Cython box
    overlaps / NMS of operator_py/cython, which SimpleDet compiles with `make`); building a symbol
    never calls them. Those absent here become stand-in modules whose functions raise if called."""
    import importlib.util
    import types

    def unavailable(module):
        def getattr_(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def fail(*args, **kwargs):
                raise RuntimeError(f"{module}.{attr}: not available (symbol-only import)")
            return fail
        return getattr_

    for name in ("cv2", "pycocotools", "pycocotools.mask", "pycocotools.coco", "pycocotools.cocoeval",
                 "operator_py.cython.bbox", "operator_py.cython.bbox_self",
                 "operator_py.cython.cpu_nms", "operator_py.cython.gpu_nms"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            module = types.ModuleType(name)
            module.__getattr__ = unavailable(name)
            sys.modules[name] = module


def build_one(simpledet_root: str, config: str) -> dict:
    """In a fresh process: SimpleDet's test symbol for config/<config>.py -> {arg, aux, stand_ins}."""
    sys.path.insert(0, simpledet_root)
    os.chdir(simpledet_root)
    import importlib

    import mxnet as mx

    added = _register_standins()
    _stub_data_modules()
    detection_input = importlib.import_module("core.detection_input")
    if not hasattr(detection_input, "Resize2DImageBboxByRoidb"):
        # config/faster_r50v2c4_c5_256roi_multiscale_2x.py imports a transform its
        # core/detection_input.py no longer has; the symbol never uses it
        detection_input.Resize2DImageBboxByRoidb = type("Resize2DImageBboxByRoidb", (), {})
    module = importlib.import_module("config." + config.replace("/", "."))
    (pGen, pKv, pRpn, pRoi, pBbox, pDataset, pModel, pOpt, pTest,
     transform, data_name, label_name, metric_list) = module.get_config(is_train=False)
    # the RPN-only configs have no R-CNN test symbol: rpn_test.py runs rpn_test_symbol
    sym = pModel.test_symbol if pModel.test_symbol is not None else pModel.rpn_test_symbol
    shapes = {k: v for k, v in DATA_SHAPES.items() if k in sym.list_arguments()}
    try:
        arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
    except mx.base.MXNetError:
        # networks built for one padded size (NAS-FPN, SEPC's iBN, EfficientNet): the config's PadParam
        pad = getattr(module, "PadParam", None) or _pad_param(module)
        shapes["data"] = (1, 3, pad.short, pad.long)
        arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
    if arg_shapes is None:
        raise RuntimeError("shape inference incomplete")
    args = {n: list(s) for n, s in zip(sym.list_arguments(), arg_shapes) if n not in DATA_SHAPES}
    aux = {n: list(s) for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    used = sorted({node["attrs"]["stands_for"] for node in json.loads(sym.tojson())["nodes"]
                   if node.get("attrs", {}).get("op_type") == "simpledet_standin"})
    return {"arg": args, "aux": aux, "stand_ins": used, "registered": added, "mxnet": mx.__version__,
            "data": list(shapes["data"])}


def _pad_param(module):
    """The PadParam class get_config defines (a local class: read from the test transforms)."""
    transform = module.get_config(is_train=False)[9]
    for t in transform:
        p = getattr(t, "p", None)
        if p is not None and hasattr(p, "short") and hasattr(p, "long") and type(t).__name__.startswith("Pad"):
            return p
    raise RuntimeError("no PadParam in the test transforms")


# ---------------------------------------------------------------- in the parent

def _export(git_dir: Path, dest: Path) -> str:
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def our_configs() -> list[str]:
    return sorted(str(p.relative_to(REPO / "configs").with_suffix("")) for p in (REPO / "configs").rglob("*.py")
                  if p.name != "__init__.py")


def generate(configs: list[str], simpledet_git: Path, mxnext_git: Path) -> list[tuple[str, str]]:
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "simpledet"
        sd_commit = _export(simpledet_git, root)
        mxnext_commit = _export(mxnext_git, Path(tmp) / "mxnext")
        # SimpleDet imports mxnext as a top-level package next to its own
        (root / "mxnext").symlink_to(Path(tmp) / "mxnext" / "mxnext")
        for config in configs:
            if not (root / "config" / f"{config}.py").is_file():
                print(f"{config}: no SimpleDet config of that name, skipped")
                continue
            proc = subprocess.run([sys.executable, __file__, "--child", str(root), config],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append((config, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"))
                print(f"FAILED {config}: {failures[-1][1]}", file=sys.stderr)
                continue
            built = json.loads(proc.stdout.strip().splitlines()[-1])
            source = (f"TuSimple/simpledet@{sd_commit} config/{config}.py "
                      f"(mxnext RogerChern/mxnext@{mxnext_commit}, mxnet {built['mxnet']}; "
                      f"shape-only stand-ins: {', '.join(built['stand_ins']) or 'none'}; "
                      f"data {tuple(built['data'])})")
            manifest = {"source": source, "arg": built["arg"], "aux": built["aux"]}
            dest = OUT / f"{config}.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(_dumps(manifest))
            print(f"{config}: {len(built['arg'])} arg, {len(built['aux'])} aux")
    return failures


def _dumps(manifest: dict) -> str:
    """One name per line (diffable), shapes inline."""
    lines = ["{", f'  "source": {json.dumps(manifest["source"])},']
    for i, part in enumerate(("arg", "aux")):
        items = list(manifest[part].items())
        lines.append(f'  "{part}": {{')
        lines += [f"    {json.dumps(k)}: {json.dumps(v)}" + ("," if j < len(items) - 1 else "")
                  for j, (k, v) in enumerate(items)]
        lines.append("  }" + ("," if i == 0 else ""))
    return "\n".join(lines + ["}", ""])


# ---------------------------------------------------------------- comparison with the shared manifests

_UNIT = re.compile(r"^stage(\d)_unit(\d+)_")
_FPN = re.compile(r"^(P\d_(lateral|conv)_|rpn_conv_(weight|bias)$|rpn_conv_(cls|bbox)_)")


def _units(names) -> dict[int, int]:
    out: dict[int, int] = {}
    for name in names:
        m = _UNIT.match(name)
        if m:
            out[int(m[1])] = max(out.get(int(m[1]), 0), int(m[2]))
    return out


def differences(shared_names, generated_names) -> list[str]:
    """How a shared (names-only) manifest differs from the generated one, in words; [] if equal."""
    shared, ours = set(shared_names), set(generated_names)
    if shared == ours:
        return []
    out = []
    extra, missing = shared - ours, ours - shared
    su, gu = _units(shared), _units(ours)
    for stage in sorted(set(su) | set(gu)):
        if su.get(stage, 0) != gu.get(stage, 0):
            out.append(f"shared lists {su.get(stage, 0)} stage{stage} units, SimpleDet's config builds "
                       f"{gu.get(stage, 0)}")
    deeper = {n for n in extra if _UNIT.match(n) and int(_UNIT.match(n)[2]) > gu.get(int(_UNIT.match(n)[1]), 0)}
    extra -= deeper
    fpn = {n for n in extra if _FPN.match(n)}
    if fpn:
        c4 = sorted({n.rsplit("_", 1)[0] for n in missing if n.startswith(("rpn_conv_3x3", "rpn_cls_logit",
                                                                           "rpn_bbox_delta"))})
        out.append(f"shared lists {len(fpn)} FPN neck / FPN RPN names (P*_lateral, P*_conv, rpn_conv, "
                   f"rpn_conv_cls, rpn_conv_bbox) that SimpleDet's C4 / C5-red network has not"
                   + (f", and lacks that network's RPN ({', '.join(c4)})" if c4 else ""))
        extra -= fpn
        missing -= {n for n in missing if n.startswith(("rpn_conv_3x3", "rpn_cls_logit", "rpn_bbox_delta"))}
    sc_bn = {n for n in extra if "_sc_bn_" in n}
    if sc_bn:
        stages = sorted({int(_UNIT.match(n)[1]) for n in sc_bn})
        out.append(f"shared lists {len(sc_bn)} stageN_unit1_sc_bn_* (ResNet v1 shortcut BN; stages "
                   f"{', '.join(map(str, stages))}) that SimpleDet's ResNet v2 has not (bare shortcut conv)")
        extra -= sc_bn
    anchors = {n for n in extra if n.startswith("anchor_stride")}
    if anchors:
        out.append(f"shared lists {', '.join(sorted(anchors, key=lambda n: int(n[13:])))}, which SimpleDet's "
                   f"test symbol has not (only FPNRpnHead with RpnParam.nnvm_proposal creates them)")
        extra -= anchors
    if extra:
        out.append(f"shared only: {', '.join(sorted(extra)[:6])}" + (" ..." if len(extra) > 6 else ""))
    if missing:
        out.append(f"generated only: {', '.join(sorted(missing)[:6])}" + (" ..." if len(missing) > 6 else ""))
    return out


def compare(shared_dir: Path = SHARED, out_dir: Path = OUT) -> str:
    """README text: each generated manifest against the shared one of the same name."""
    same, differ = [], []
    for path in sorted(out_dir.rglob("*.json")):
        rel = path.relative_to(out_dir).with_suffix("")
        generated = json.loads(path.read_text())
        shared_path = shared_dir / f"{rel}.json"
        if not shared_path.is_file():
            differ.append((str(rel), ["no shared manifest"]))
            continue
        shared = json.loads(shared_path.read_text())
        diff = differences(list(shared["arg"]) + list(shared["aux"]),
                           list(generated["arg"]) + list(generated["aux"]))
        (differ.append((str(rel), diff)) if diff else same.append(str(rel)))
    source = json.loads(next(out_dir.rglob("*.json")).read_text())["source"].split(" config/")[0] \
        if same or differ else "?"
    lines = [
        "# SimpleDet's own parameter manifests",
        "",
        f"Generated by `tools/simpledet_manifests.py` (run with an MXNet 1.x Python) from {source}: for each",
        "config of ours that SimpleDet has, the `arg` / `aux` names and shapes of SimpleDet's test symbol",
        "(`get_config(is_train=False)`, `pModel.test_symbol`, shapes inferred for data (1, 3, 800, 1216)).",
        "The data inputs (data, im_info, im_id, rec_id) are left out; precomputed anchors (`anchor_stride*`)",
        "are kept. Used by tests/test_convert_simpledet.py.",
        "",
        "## Against the shared name manifests (../../../../shared/fixtures/simpledet/detectors)",
        "",
        f"{len(same) + len(differ)} generated; {len(same)} shared manifests list exactly SimpleDet's names, "
        f"{len(differ)} differ:",
        "",
    ]
    for rel, diff in differ:
        lines.append(f"- {rel}: " + "; ".join(diff))
    lines += ["", "Identical: " + ", ".join(same), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="relative config names (default: all of ours)")
    parser.add_argument("--simpledet-git", type=Path, default=SIMPLEDET_GIT)
    parser.add_argument("--mxnext-git", type=Path, default=MXNEXT_GIT)
    parser.add_argument("--compare", action="store_true",
                        help="only (re)write the README comparing the generated manifests with the shared ones")
    parser.add_argument("--child", nargs=2, metavar=("SIMPLEDET_ROOT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = build_one(*args.child)
        sys.stdout.write("\n" + json.dumps(result) + "\n")
        return 0
    if args.compare:
        (OUT / "README.md").write_text(compare())
        return 0
    failures = generate(args.configs or our_configs(), args.simpledet_git, args.mxnext_git)
    if SHARED.is_dir():
        (OUT / "README.md").write_text(compare())
    for config, why in failures:
        print(f"not generated: {config}: {why}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
