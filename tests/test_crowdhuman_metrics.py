"""CrowdHuman AP and MR^-2 (engine/crowdhuman_metrics.py): hand-computed cases (greedy matching,
ignore regions by IoA, clipping, miss rates at the FPPI points), and the numbers of CrowdDet's own
toolkit on a crafted set (tests/fixtures/crowdhuman/apmr_reference.json, made by
tools/crowddet_reference.py; rerun live when a CrowdDet checkout is at /tmp/crowddet)."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from simpledet.data.crowdhuman import read_crowdhuman
from simpledet.engine.crowdhuman_metrics import crowdhuman_scores, evaluate_crowdhuman, match_image
from simpledet.errors import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "crowdhuman" / "apmr_reference.json"
CROWDDET = Path("/tmp/crowddet")
TOOL = Path(__file__).parent.parent / "tools" / "crowddet_reference.py"


def _gt(images: list[tuple[int, int]], boxes: list[tuple[int, list, int]]) -> dict:
    """images: (width, height) per image id 1..; boxes: (image_id, xywh, iscrowd)."""
    return {"images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h}
                       for i, (w, h) in enumerate(images)],
            "annotations": [{"id": n + 1, "image_id": i, "category_id": 1, "bbox": b, "iscrowd": c}
                            for n, (i, b, c) in enumerate(boxes)],
            "categories": [{"id": 1, "name": "person"}]}


def _det(image_id: int, bbox: list, score: float) -> dict:
    return {"image_id": image_id, "category_id": 1, "bbox": bbox, "score": score}


def test_match_image_greedy_duplicates_and_ignore_by_ioa() -> None:
    persons = np.array([[0, 0, 10, 20], [5, 0, 15, 20]], dtype=float)  # IoU between them 1/3
    ignores = np.array([[50, 50, 100, 100]], dtype=float)
    dets = np.array([
        [5, 0, 15, 20],  # exactly the second person
        [0, 0, 10, 20],  # exactly the first
        [0, 0, 10, 20],  # a duplicate of the first: nothing left to take
        [60, 60, 70, 70],  # inside the ignore region (IoA 1, IoU 0.04): dropped
        [40, 40, 60, 60],  # IoA 100/400 = 0.25: a false positive
        [55, 55, 65, 65],  # a region absorbs any number of detections
    ], dtype=float)
    assert match_image(dets, np.linspace(1, 0.5, 6), persons, ignores).tolist() == [1, 1, 0, -1, 0, -1]
    # a detection that can take a person is not dropped, even inside a region
    assert match_image(dets[:1], np.ones(1), persons, np.array([[0, 0, 20, 20.0]])).tolist() == [1]
    # greedy: the higher-scored detection takes the person it overlaps most
    two = np.array([[0, 0, 12, 20], [0, 0, 10, 20]], dtype=float)  # IoU 10/12 and 1 with the first person
    assert match_image(two, np.ones(2), persons[:1], ignores[:0]).tolist() == [1, 0]


def test_ap_by_hand_with_ignore_region_and_clipping() -> None:
    # one 100 x 100 image: two persons, one ignore region
    gt = _gt([(100, 100)], [(1, [0, 0, 10, 20], 0), (1, [90, 0, 10, 20], 0), (1, [0, 50, 40, 40], 1)])
    dets = [_det(1, [0, 0, 10, 20], 0.9),  # TP
            _det(1, [5, 55, 10, 10], 0.8),  # inside the ignore region: dropped
            _det(1, [70, 80, 10, 10], 0.7),  # FP
            _det(1, [90, 0, 30, 20], 0.6)]  # IoU 1/3 as given, 1 once clipped to the image: TP
    # counted: TP, FP, TP -> recall 1/2, 1/2, 1; precision 1, 1/2, 2/3
    # AP = (1/2 - 1/2) * (1 + 1/2) / 2 + (1 - 1/2) * (1/2 + 2/3) / 2 = 7/24
    # FPPI 0, 1, 1: every point's first FPPI >= it is the FP's, at miss rate 1/2
    assert crowdhuman_scores(gt, dets) == pytest.approx({"AP": 7 / 24, "MR": 0.5}, abs=1e-12)
    # as an ordinary box the region is a third person, missed, and the dropped detection a second FP
    gt["annotations"][2]["iscrowd"] = 0
    # recall 1/3, 1/3, 1/3, 2/3; precision 1, 1/2, 1/3, 1/2
    ap = (1 / 3) * (1 / 3 + 1 / 2) / 2
    assert crowdhuman_scores(gt, dets)["AP"] == pytest.approx(ap, abs=1e-12)


def test_miss_rate_at_the_nine_fppi_points_by_hand() -> None:
    # ten 100 x 100 images, one person each; detections in score order: T T F T T F T F F F F T F F F F
    events = "TTFTTFTFFFFTFFFF"
    gt = _gt([(100, 100)] * 10, [(i + 1, [10, 10, 30, 60], 0) for i in range(10)])
    dets, next_person = [], 1
    for n, event in enumerate(events):
        score = 1 - 0.05 * n
        if event == "T":
            dets.append(_det(next_person, [10, 10, 30, 60], score))
            next_person += 1
        else:
            dets.append(_det(n % 10 + 1, [70, 70, 20, 20], score))
    # FPPI reaches 0.01 .. 0.1 (5 points) at the first F (recall 2/10), 0.1778 at the second (4/10),
    # 0.3162 at the fourth (FPPI 0.4, 5/10), 0.5623 at the sixth (0.6, 5/10), 1 at the tenth (6/10)
    misses = [0.8] * 5 + [0.6, 0.5, 0.5, 0.4]
    expected = math.exp(sum(math.log(m) for m in misses) / 9)
    assert crowdhuman_scores(gt, dets)["MR"] == pytest.approx(expected, abs=1e-12)
    # fewer false positives than 1 per image: the last FPPI (0.3) answers the points above it
    short = dets[:8]  # T T F T T F T F: FPPI up to 0.3, recall 5/10 at the end
    misses = [0.8] * 5 + [0.6, 0.5, 0.5, 0.5]
    assert crowdhuman_scores(gt, short)["MR"] == pytest.approx(math.exp(sum(map(math.log, misses)) / 9), abs=1e-12)


def test_edge_cases_and_bad_ids() -> None:
    gt = _gt([(50, 50)], [(1, [0, 0, 10, 10], 0)])
    assert crowdhuman_scores(gt, []) == {"AP": 0.0, "MR": 1.0}
    assert crowdhuman_scores(_gt([(50, 50)], [(1, [0, 0, 10, 10], 1)]), [_det(1, [0, 0, 9, 9], 1.0)]) == \
        {"AP": -1.0, "MR": -1.0}  # no person: undefined
    result = evaluate_crowdhuman(gt, [_det(1, [0, 0, 10, 10], 0.5)], source="val.odgt")
    assert result.stats == {"AP": 0.0, "MR": 0.0} and result.num_images == 1  # one point: no area; no miss
    with pytest.raises(UserError, match=r"val.odgt: detections refer to image ids not in this file: \[7\]"):
        evaluate_crowdhuman(gt, [_det(7, [0, 0, 10, 10], 0.5)], source="val.odgt")


def _our_scores(ground_truth: list[dict], detections: list[dict], folder: Path) -> dict[str, float]:
    """The .odgt records through our reader, CrowdDet's detection records as COCO results."""
    odgt = folder / "gt.odgt"
    odgt.write_text("".join(json.dumps(r) + "\n" for r in ground_truth))
    coco = read_crowdhuman(odgt, folder).coco
    image_id = {image["file_name"][: -len(".jpg")]: image["id"] for image in coco["images"]}
    results = [_det(image_id[r["ID"]], box["box"], box["score"]) for r in detections for box in r["dtboxes"]]
    return crowdhuman_scores(coco, results)


def test_matches_crowddet_toolkit_numbers(tmp_path: Path) -> None:
    reference = json.loads(FIXTURE.read_text())
    ours = _our_scores(reference["ground_truth"], reference["detections"], tmp_path)
    assert 0.05 < reference["toolkit"]["AP"] < 0.95 and 0.05 < reference["toolkit"]["MR"] < 0.99  # not degenerate
    assert ours == pytest.approx(reference["toolkit"], rel=1e-9, abs=1e-12)


@pytest.mark.skipif(not (CROWDDET / "lib" / "evaluate" / "APMRToolkits").is_dir(),
                    reason="no CrowdDet at /tmp/crowddet")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_crowddet_toolkit_live(tmp_path: Path, seed: int) -> None:
    spec = importlib.util.spec_from_file_location("crowddet_reference", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    ground_truth, detections = tool.make_case(seed)
    expected = tool.run_toolkit(CROWDDET, ground_truth, detections, tmp_path / "toolkit")
    assert _our_scores(ground_truth, detections, tmp_path) == pytest.approx(expected, rel=1e-9, abs=1e-12)
