"""Writes tests/fixtures/crowdhuman/apmr_reference.json: a small crafted CrowdHuman ground truth
(.odgt records), detections in CrowdDet's result layout, and the AP and MR^-2 that CrowdDet's
own toolkit (lib/evaluate/APMRToolkits) gives for them. tests/test_crowdhuman_metrics.py checks
simpledet/engine/crowdhuman_metrics.py against those numbers.

    python tools/crowddet_reference.py --crowddet /path/to/CrowdDet [--out FILE] [--seed 0]

The toolkit needs numpy only; any Python with numpy runs this.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "crowdhuman" / "apmr_reference.json"


def make_case(seed: int, num_images: int = 12) -> tuple[list[dict], list[dict]]:
    """(ground-truth .odgt records, CrowdDet detection records). Every image has at least one box
    and one detection record (the toolkit needs both); detections are jittered copies of persons,
    duplicates, boxes inside ignore regions, strays and boxes past the image edge, with scores
    rounded to 2 decimals so that some tie."""
    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for n in range(num_images):
        width, height = int(rng.integers(80, 160)), int(rng.integers(80, 160))
        image_id = f"img{n:03d}"
        boxes = []
        for _ in range(int(rng.integers(1, 7))):
            w, h = float(rng.uniform(8, 50)), float(rng.uniform(15, 70))
            x, y = float(rng.uniform(-10, width - w / 2)), float(rng.uniform(-10, height - h / 2))
            kind = rng.choice(["person", "person", "person", "mask", "ignored"])
            box = {"tag": "mask" if kind == "mask" else "person", "fbox": [x, y, w, h],
                   "hbox": [x, y, w / 3, h / 5], "vbox": [x, y, w, h],
                   "extra": {"ignore": int(kind != "person")}, "head_attr": {"ignore": 0}}
            boxes.append(box)
        gts.append({"ID": image_id, "width": width, "height": height, "gtboxes": boxes})
        dets = []
        for box in boxes:
            x, y, w, h = box["fbox"]
            for _ in range(int(rng.integers(0, 3))):  # hits, near misses and duplicates
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                dets.append([x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]])
            if box["extra"]["ignore"] and rng.random() < 0.7:  # a smaller box inside the region
                dets.append([x + w / 4, y + h / 4, w / 2, h / 2])
        for _ in range(int(rng.integers(0, 4))):  # strays
            w, h = float(rng.uniform(8, 40)), float(rng.uniform(15, 60))
            dets.append([float(rng.uniform(-5, width - 5)), float(rng.uniform(-5, height - 5)), w, h])
        dts.append({"ID": image_id, "width": width, "height": height,
                    "dtboxes": [{"box": [float(v) for v in d], "score": round(float(rng.uniform(0.05, 1.0)), 2),
                                 "tag": 1} for d in dets]})
    return gts, dts


def run_toolkit(crowddet: Path, gts: list[dict], dts: list[dict], work: Path) -> dict[str, float]:
    """CrowdDet's compute_APMR on the records, through files as it reads them."""
    sys.path.insert(0, str(Path(crowddet) / "lib" / "evaluate"))
    try:
        toolkit = importlib.import_module("APMRToolkits")
    finally:
        sys.path.pop(0)
    work.mkdir(parents=True, exist_ok=True)
    gt_path, dt_path = work / "gt.odgt", work / "dt.odgt"
    gt_path.write_text("".join(json.dumps(r) + "\n" for r in gts))
    dt_path.write_text("".join(json.dumps(r) + "\n" for r in dts))
    database = toolkit.Database(str(gt_path), str(dt_path), "box", None, 0)
    database.compare()
    ap, _ = database.eval_AP()
    mr, _ = database.eval_MR()
    return {"AP": float(ap), "MR": float(mr)}


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crowddet", required=True, help="a CrowdDet checkout (holds lib/evaluate/)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gts, dts = make_case(args.seed)
    with tempfile.TemporaryDirectory() as work:
        toolkit = run_toolkit(Path(args.crowddet), gts, dts, Path(work))
    meta = {"made_by": "tools/crowddet_reference.py", "seed": args.seed, "numpy": np.__version__,
            "toolkit": "CrowdDet lib/evaluate/APMRToolkits: Database(gt, dt, 'box', None, 0), compare(), "
                       "eval_AP(), eval_MR()"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "ground_truth": gts, "detections": dts, "toolkit": toolkit}) + "\n")
    print(f"wrote {out}: AP {toolkit['AP']:.6f}, MR {toolkit['MR']:.6f}")


if __name__ == "__main__":
    main()
