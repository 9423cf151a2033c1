"""`simpledet score GT.json DETECTIONS.json`: COCO stats of any detector's results."""

import json
from pathlib import Path

from simpledet.errors import UserError


def add_parser(sub) -> None:
    sc = sub.add_parser("score", help="COCO stats of any detector's results file against a ground truth")
    sc.add_argument("gt", metavar="GT.json")
    sc.add_argument("detections", metavar="DETECTIONS.json")
    sc.add_argument("--iou-type", dest="iou_type", choices=("bbox", "segm"), default="bbox")
    sc.add_argument("--out", help="write the 12 stats as JSON here")
    sc.set_defaults(func=run)



def run(args) -> None:
    from simpledet.engine.evaluator import evaluate_detections, format_results, write_metrics

    path = Path(args.detections)
    if not path.is_file():
        raise UserError(f"detections file not found: {path}")
    try:
        detections = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(detections, list):
        raise UserError(f"{path}: expected a list of COCO result records")
    needed = ("image_id", "category_id", "score", "bbox" if args.iou_type == "bbox" else "segmentation")
    for i, record in enumerate(detections):
        if not isinstance(record, dict) or any(key not in record for key in needed):
            raise UserError(f"{path}: record #{i} is not a COCO {args.iou_type} result: it needs the keys "
                            f"{', '.join(needed)}; got {str(record)[:120]}")
    result = evaluate_detections(args.gt, detections, iou_type=args.iou_type)
    print(format_results(result))
    if args.out:
        write_metrics(args.out, result)
        print(f"wrote {args.out}")
