"""`simpledet score` (faster-coco-eval) against pycocotools' COCOeval on a COCO-sized result set.

Synthetic and seeded: N images with ground truth, 100 detections per image (jittered ground
truth and false positives with random scores). Both must print the same 12 numbers; reports the
wall time of each and the speed-up.

    python bench/score_speed.py --images 5000
"""

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from simpledet.engine.evaluator import STAT_NAMES, evaluate_detections


def make_set(num_images: int, dets_per_image: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, 81)]
    ann_id = 1
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 640, "height": 480})
        n = int(rng.integers(1, 15))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(8, 200, (n, 2))
        cats = rng.integers(1, 81, n)
        for (x, y), (w, h), c in zip(xy, wh, cats):
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": int(c), "bbox": [x, y, w, h],
                                "area": float(w * h), "iscrowd": 0})
            ann_id += 1
        k = dets_per_image
        src = rng.integers(0, n, k)
        jitter = rng.normal(0, 6, (k, 4))
        boxes = np.concatenate([xy[src], wh[src]], axis=1) + jitter
        boxes[:, 2:] = np.abs(boxes[:, 2:]) + 1
        false = rng.random(k) < 0.5
        boxes[false, :2] = rng.uniform(0, 500, (false.sum(), 2))
        det_cats = np.where(rng.random(k) < 0.8, cats[src], rng.integers(1, 81, k))
        scores = rng.random(k)
        for b, c, s in zip(boxes.tolist(), det_cats.tolist(), scores.tolist()):
            detections.append({"image_id": image_id, "category_id": int(c), "bbox": b, "score": s})
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100)
    args = ap.parse_args()
    gt, dets = make_set(args.images, args.dets)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path = Path(tmp) / "gt.json"
        gt_path.write_text(json.dumps(gt))
        start = time.perf_counter()
        ours = evaluate_detections(gt_path, dets)
        t_ours = time.perf_counter() - start

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(gt_path))
            ev = COCOeval(coco, coco.loadRes(dets), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        t_ref = time.perf_counter() - start
    diff = max(abs(ours.stats[k] - float(v)) for k, v in zip(STAT_NAMES, ev.stats))
    print(f"{args.images} images, {len(dets)} detections: simpledet score {t_ours:.1f} s, "
          f"pycocotools {t_ref:.1f} s, speed-up {t_ref / t_ours:.1f}x, max stat difference {diff:.2e}")


if __name__ == "__main__":
    main()
