"""`simpledet export [CONFIG] --weights W --format onnx|torch-export --out FILE`: the whole
detector (resize and normalisation to NMS and mask pasting) as one file that runs without this
package: an ONNX graph (`predict --backend onnxruntime --model FILE`) or a torch.export
ExportedProgram (.pt2, torch.export.load)."""

import logging
from pathlib import Path

from simpledet.cli.checkpoint_info import checkpoint_categories, config_of_checkpoint
from simpledet.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torch-export")


def add_parser(sub) -> None:
    e = sub.add_parser("export", help="export a detector to ONNX or a torch.export program")
    e.add_argument("config", nargs="?", help="the model's config; may be left out for our checkpoints, which "
                                             "record their config")
    e.add_argument("--weights", required=True)
    e.add_argument("--format", required=True, choices=FORMATS, dest="format")
    e.add_argument("--out", required=True, help="the file to write (.onnx, or .pt2 for torch-export)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 19, the first with DeformConv)")
    e.add_argument("--half", action="store_true",
                   help="float16 weights and computation (for GPU runtimes; input and outputs stay float32)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value")
    e.set_defaults(func=run)


def run(args) -> None:
    import torch

    from simpledet.api import build_model
    from simpledet.config import load_config
    from simpledet.deploy.export_onnx import DEFAULT_OPSET, onnx_model, require_deploy_packages, save_onnx, verify_onnx
    from simpledet.deploy.export_program import export_program, save_program
    from simpledet.deploy.exportable import ExportableDetector, check_exportable, example_image
    from simpledet.engine.checkpoint import load_weights
    from simpledet.modeling.layers.deform_conv import DeformConv2d

    weights = Path(args.weights)
    if not weights.is_file():
        raise UserError(f"--weights {weights}: no such file")
    if args.format == "onnx":
        require_deploy_packages()
    elif args.opset is not None:
        raise UserError("--opset is for --format onnx")
    cfg = load_config(args.config, args.overrides) if args.config else config_of_checkpoint(weights, args.overrides)
    check_exportable(cfg)
    model = build_model(cfg, load_pretrained=False)
    load_weights(model, weights)
    opset = args.opset if args.opset is not None else DEFAULT_OPSET
    if args.format == "onnx" and opset < DEFAULT_OPSET and any(isinstance(m, DeformConv2d) for m in model.modules()):
        raise UserError(f"--opset {opset}: the deformable convolutions need ONNX's DeformConv, opset 19 or later")
    if args.format == "onnx" and opset < 16:
        raise UserError(f"--opset {opset}: RoIAlign as the model computes it (its pixel offsets) needs opset 16 or "
                        "later")

    categories = checkpoint_categories(weights)
    names, category_ids = None, None
    if cfg.data.contiguous_labels and categories is not None:
        names, category_ids = categories
    elif cfg.data.contiguous_labels:
        log.warning("%s has no categories beside it: labels 1..%d are written as they are", weights,
                    cfg.model.num_classes)
    detector = ExportableDetector(model, category_ids=category_ids if cfg.data.contiguous_labels else None,
                                  masks=cfg.model.predicts_masks, mask_scores=cfg.model.predicts_mask_scores,
                                  dtype=torch.float16 if args.half else torch.float32)
    program = export_program(detector, example_image())
    if args.format == "torch-export":
        save_program(program, args.out)
    else:
        # the categories the labels are: the checkpoint's, or labels that are category ids already
        ids = category_ids if category_ids is not None else list(range(1, cfg.model.num_classes + 1))
        graph = onnx_model(program, detector.output_names, opset, names, ids)
        if not args.half:  # an fp16 graph rounds differently: its parity is the tests' business
            # another size than the traced one
            verify_onnx(graph, detector, example_image(112, 144, seed=1), quantised=cfg.qat is not None)
        save_onnx(graph, args.out)
    print(f"{type(model).__name__} -> {args.out} ({args.format}{', float16' if args.half else ''}): image float32 "
          f"[3, H, W] RGB in [0, 1] -> {', '.join(detector.output_names)}")
