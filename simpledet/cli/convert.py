"""`simpledet convert torchvision|mxnet|simpledet SRC DST`: weights from other frameworks."""

import json
from pathlib import Path

from simpledet.errors import UserError


def add_parser(sub) -> None:
    c = sub.add_parser("convert", help="convert weights from another framework")
    csub = c.add_subparsers(dest="source", required=True)
    ct = csub.add_parser("torchvision", help="a torchvision detection state_dict -> DST (.safetensors, .pt or .pth)")
    ct.add_argument("src")
    ct.add_argument("dst")
    ct.set_defaults(func=run_torchvision)
    cm = csub.add_parser("mxnet",
                         help="a SimpleDet ImageNet-pretrained backbone (.params) -> DST (.safetensors, .pt or .pth)")
    cm.add_argument("src")
    cm.add_argument("dst")
    cm.set_defaults(func=run_mxnet)
    cs = csub.add_parser("simpledet",
                         help="a SimpleDet zoo detector checkpoint (.params) into our config of the same name")
    cs.add_argument("src")
    cs.add_argument("dst")
    cs.add_argument("--config", required=True)
    cs.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    cs.set_defaults(func=run_simpledet)



def run_torchvision(args) -> None:
    from simpledet.files import atomic_write_text
    from simpledet.weights.file_format import read_state_dict, writable_format, write_state_dict
    from simpledet.weights.torchvision import convert_torchvision, is_torchvision_detection

    dst = Path(args.dst)
    writable_format(dst)
    state = read_state_dict(args.src)
    if not is_torchvision_detection(state):
        raise UserError(f"{args.src}: not a torchvision detection checkpoint (no backbone.body.* parameters)")
    converted, skipped = convert_torchvision(state)
    write_state_dict(dst, converted)
    meta = {"source": str(args.src), "converted_from": "torchvision"}
    atomic_write_text(dst.with_suffix(".json"), json.dumps(meta) + "\n")
    print(f"converted {len(converted)} arrays ({len(skipped)} skipped: BatchNorm counters) -> {dst}")


def run_mxnet(args) -> None:
    from simpledet.weights.mxnet_backbone import convert_mxnet_backbone

    print(convert_mxnet_backbone(args.src, args.dst))


def run_simpledet(args) -> None:
    from simpledet.weights.simpledet_checkpoint import convert_simpledet_checkpoint

    print(convert_simpledet_checkpoint(args.src, args.config, args.dst, args.overrides))
