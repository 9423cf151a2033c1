"""`simpledet score`: the 12 COCO stats of any results file, the same as pycocotools gives."""

import json

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from simpledet.cli import main
from simpledet.engine.evaluator import STAT_NAMES

from .conftest import REPO


def test_score_matches_pycocotools(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from score_speed import make_set

    gt, dets = make_set(60, 20, seed=3)
    gt_path, det_path, out = tmp_path / "gt.json", tmp_path / "dets.json", tmp_path / "stats.json"
    gt_path.write_text(json.dumps(gt))
    det_path.write_text(json.dumps(dets))
    assert main(["score", str(gt_path), str(det_path), "--out", str(out)]) == 0
    assert "Average Precision" in capsys.readouterr().out
    stats = json.loads(out.read_text())
    coco = COCO(str(gt_path))
    ev = COCOeval(coco, coco.loadRes(str(det_path)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    for name, value in zip(STAT_NAMES, ev.stats):
        assert abs(stats[name] - value) < 1e-9, name


def test_score_bad_detections_file(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    bad = tmp_path / "dets.json"
    bad.write_text("{not json")
    assert main(["score", str(gt), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "dets.json" in err and "Traceback" not in err


def test_score_record_without_a_box_is_named(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "width": 10, "height": 10, "file_name": "a.jpg"}],
                              "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5},
                                {"image_id": 1, "category_id": 1, "score": 0.4}]))
    assert main(["score", str(gt), str(dets)]) == 2
    err = capsys.readouterr().err
    assert "dets.json: record #1" in err and "bbox" in err and "Traceback" not in err
