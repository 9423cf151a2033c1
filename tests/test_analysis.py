"""Tests for the analysis tools: PR curves, confusion matrix, worst images, VOC mAP, per-class AP
units, `simpledet plot` and `simpledet eval --plots --metric voc`. Every number is worked out by
hand in the comments, or by the plain reference implementation written here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simpledet.analysis.confusion_matrix import confusion_matrix, write_confusion_matrix
from simpledet.analysis.image_boxes import group_by_image
from simpledet.analysis.pr_curves import class_curves, plot_pr_curves
from simpledet.analysis.voc_map import voc_map
from simpledet.analysis.worst_images import draw_worst_images, worst_images
from simpledet.cli import main
from simpledet.engine.evaluator import evaluate_detections, format_results, write_metrics

from .helpers import QUICKSTART, shapes_overrides

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 0 and image.height > 0


def _ann(image_id: int, cat: int, bbox: list[float], **flags) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3], **flags}


def _det(image_id: int, cat: int, bbox: list[float], score: float) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": bbox, "score": score}


def _gt(categories: list[tuple[int, str]], annotations: list[dict], num_images: int) -> dict:
    anns = [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(annotations)]
    return {"images": [{"id": i, "file_name": f"img{i}.png", "width": 100, "height": 100}
                       for i in range(1, num_images + 1)],
            "categories": [{"id": c, "name": n} for c, n in categories], "annotations": anns}


# ---------------------------------------------------------------- PR curves and per-class AP

@pytest.fixture(scope="module")
def pr_set() -> tuple[dict, list[dict]]:
    """Three classes whose precision arrays can be written down:
    - cat: 2 boxes; detections TP 0.9, FP 0.8, TP 0.7, all exact. Precision after each: 1, 1/2, 2/3;
      made non-increasing from the right: 1, 2/3, 2/3 at recall 1/2, 1/2, 1. At every IoU, COCO's
      101 recall points read 1 up to recall 0.50 (51 points) and 2/3 after (50 points).
    - dog: no ground truth (its detection has nothing to match): precision -1, AP NaN.
    - bird: 1 box, one detection with IoU 0.62 (100x62 inside 100x100): a hit at IoU 0.50, 0.55
      and 0.60 only, so precision 1 at 3 of the 10 thresholds: AP50 1, AP 0.3."""
    gt = _gt([(1, "cat"), (2, "dog"), (3, "bird")], [
        _ann(1, 1, [0, 0, 20, 20]), _ann(2, 1, [10, 10, 20, 20]), _ann(3, 3, [0, 0, 100, 100])], num_images=3)
    dets = [_det(1, 1, [0, 0, 20, 20], 0.9), _det(1, 1, [60, 60, 20, 20], 0.8), _det(2, 1, [10, 10, 20, 20], 0.7),
            _det(2, 2, [50, 50, 10, 10], 0.6), _det(3, 3, [0, 0, 100, 62], 0.5)]
    return gt, dets


def test_pr_curves_from_coco_precision(pr_set, tmp_path) -> None:
    gt, dets = pr_set
    result = evaluate_detections(gt, dets)
    assert result.precision.shape == (10, 101, 3, 4, 3)
    cat, dog, bird = class_curves(result.precision, ["cat", "dog", "bird"])
    expected_cat = np.array([1.0] * 51 + [2 / 3] * 50)
    np.testing.assert_allclose(cat.at_iou50, expected_cat, atol=1e-12)
    np.testing.assert_allclose(cat.iou_mean, expected_cat, atol=1e-12)
    assert cat.ap == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert dog.at_iou50 is None and math.isnan(dog.ap) and math.isnan(dog.ap50)
    np.testing.assert_allclose(bird.at_iou50, np.ones(101))
    np.testing.assert_allclose(bird.iou_mean, np.full(101, 0.3), atol=1e-12)
    assert bird.ap50 == pytest.approx(1.0) and bird.ap == pytest.approx(0.3)
    # the evaluator's per-class AP is the same number
    per_class = dict(result.per_category)
    assert per_class["cat"] == pytest.approx(cat.ap) and per_class["bird"] == pytest.approx(0.3)
    assert math.isnan(per_class["dog"])
    path = plot_pr_curves([cat, dog, bird], tmp_path / "pr.png")
    assert_png(path)


def test_pr_curves_read_the_all_area_100_dets_slice() -> None:
    # a crafted array: only [:, :, k, 0, 2] (area all, maxDets 100) may be read
    precision = np.full((10, 101, 2, 4, 3), 0.9)
    precision[:, :, 0, 0, 2] = np.linspace(1, 0, 101)[None, :] * np.linspace(1, 0.1, 10)[:, None]
    precision[:, :, 1, 0, 2] = -1
    first, second = class_curves(precision, ["a", "b"])
    np.testing.assert_allclose(first.at_iou50, np.linspace(1, 0, 101))
    np.testing.assert_allclose(first.iou_mean, np.linspace(1, 0, 101) * 0.55)  # mean of 1.0 .. 0.1
    assert second.at_iou50 is None
    with pytest.raises(ValueError, match="precision must be"):
        class_curves(precision[:, :, :, 0], ["a", "b"])


def test_per_class_is_one_unit_everywhere(pr_set, tmp_path) -> None:
    gt, dets = pr_set
    result = evaluate_detections(gt, dets)
    path = tmp_path / "metrics.json"
    write_metrics(path, result, {"voc": {"mAP50": 0.5}})
    data = json.loads(path.read_text())
    assert data["per_class"]["bird"] == pytest.approx(0.3) and data["per_class"]["dog"] is None
    assert data["voc"] == {"mAP50": 0.5}
    text = format_results(result)
    # the table prints the fraction that the JSON holds, to three decimals, as the COCO rows do
    assert "bird     0.300" in text and "30.0" not in text
    assert f"= {result.stats['AP']:0.3f}" in text


# ---------------------------------------------------------------- confusion matrix and worst images

CAT, DOG = 1, 2


@pytest.fixture(scope="module")
def confusion_set() -> tuple[dict, list[dict]]:
    """Rows: ground truth cat, dog, background; columns: predicted cat, dog, background.
    image 1: cat A and dog B. cat 0.9 on A at IoU 0.82 and dog 0.7 exactly on A: ranked by score,
      the cat takes A (cat, cat) and the dog is false (background, dog); dog 0.8 on B at IoU 0.8
      (dog, dog); a dog at 0.2 is under the 0.25 score threshold and not counted.
    image 2: cat C found as a dog (cat, dog); dog D not found (dog, background).
    image 3: only a crowd region (cat); a cat inside it is not counted; a dog elsewhere is false
      (background, dog)."""
    gt = _gt([(CAT, "cat"), (DOG, "dog")], [
        _ann(1, CAT, [0, 0, 10, 10]), _ann(1, DOG, [20, 0, 10, 10]),
        _ann(2, CAT, [0, 0, 10, 10]), _ann(2, DOG, [50, 50, 10, 10]),
        _ann(3, CAT, [0, 0, 50, 50], iscrowd=1)], num_images=3)
    dets = [_det(1, CAT, [1, 0, 10, 10], 0.9), _det(1, DOG, [0, 0, 10, 10], 0.7),
            _det(1, DOG, [20, 0, 10, 8], 0.8), _det(1, DOG, [70, 70, 10, 10], 0.2),
            _det(2, DOG, [0, 0, 10, 10], 0.6),
            _det(3, CAT, [10, 10, 10, 10], 0.9), _det(3, DOG, [60, 60, 10, 10], 0.5)]
    return gt, dets


def test_confusion_matrix_hand_computed(confusion_set, tmp_path) -> None:
    gt, dets = confusion_set
    result = confusion_matrix(gt, dets)
    assert result.matrix.tolist() == [[1, 1, 0],   # cat: found once, taken for a dog once
                                      [0, 1, 1],   # dog: found once, missed once
                                      [0, 2, 0]]   # background: two false dogs
    # (missed, false): image 1 has 3 counted detections, 2 right; image 2 misses both boxes and
    # its one detection has the wrong class
    assert result.errors == {1: (0, 1), 2: (2, 1), 3: (0, 1)}
    write_confusion_matrix(result, tmp_path / "cm.json", tmp_path / "cm.png")
    saved = json.loads((tmp_path / "cm.json").read_text())
    assert saved == {"iou_threshold": 0.5, "score_threshold": 0.25, "rows": "ground truth", "columns": "predicted",
                     "classes": ["cat", "dog", "background"], "matrix": [[1, 1, 0], [0, 1, 1], [0, 2, 0]]}
    assert_png(tmp_path / "cm.png")
    # a lower score threshold lets the 0.2 dog in: one more false dog
    assert confusion_matrix(gt, dets, score_threshold=0.1).matrix[2].tolist() == [0, 3, 0]


def test_worst_images_chosen_and_drawn(confusion_set, tmp_path) -> None:
    gt, dets = confusion_set
    result = confusion_matrix(gt, dets)
    # image 2 has 3 mistakes; images 1 and 3 one each, kept in ground-truth order
    assert worst_images(result.errors) == [(2, 2, 1), (1, 0, 1), (3, 0, 1)]
    assert worst_images(result.errors, count=2) == [(2, 2, 1), (1, 0, 1)]
    assert worst_images({1: (0, 0), 2: (1, 0)}) == [(2, 1, 0)]  # no picture of a flawless image
    loaded = []

    def load_image(image_id: int) -> torch.Tensor:
        loaded.append(image_id)
        return torch.full((3, 100, 100), 0.5)

    written = draw_worst_images(tmp_path / "worst", gt, group_by_image(gt, dets), result, load_image, count=2)
    assert [p.name for p in written] == ["01_missed2_false1_img2.png", "02_missed0_false1_img1.png"]
    assert loaded == [2, 1]
    for path in written:
        assert_png(path)
        with Image.open(path) as image:
            pixels = np.asarray(image)
        assert image.size == (500, 500)  # 100 px enlarged 5x for readable captions
        assert (pixels == 255).all(axis=2).any()  # the white ground-truth outlines
        assert not (pixels == 128).all()


# ---------------------------------------------------------------- VOC mAP

@pytest.fixture(scope="module")
def voc_set() -> tuple[dict, list[dict]]:
    """cat: boxes G1 (image 1), G3 and G4 (image 2) count; G2 (`ignore`) and G5 (crowd) do not.
    In score order: d1 0.95 on G1 TP; d2 0.9 on G3 TP; d3 0.8 on G1 again, a duplicate FP; d4 0.7
    on G2 ignored; d5 0.6 on nothing FP; d6 0.5 on G4 at IoU exactly 0.5 (100 / 200) TP; d7 0.4 on
    G5 ignored. Counted: TP TP FP FP TP over 3 boxes: recall 1/3 2/3 2/3 2/3 1, precision
    1 1 2/3 1/2 3/5. All points: 1/3 x 1 + 1/3 x 1 + 1/3 x 0.6 = 13/15. VOC07 11 points: 1 at
    recall 0 .. 0.6 (7 points), 0.6 at 0.7 .. 1 (4 points): 9.4 / 11.
    bird: one box, no detection: AP 0. dog: a detection but no box: no AP, out of the mean."""
    gt = _gt([(1, "cat"), (2, "dog"), (3, "bird")], [
        _ann(1, 1, [0, 0, 10, 10]), _ann(1, 1, [20, 0, 10, 10], ignore=1), _ann(1, 3, [50, 50, 10, 10]),
        _ann(2, 1, [0, 0, 10, 10]), _ann(2, 1, [30, 30, 10, 10]), _ann(2, 1, [60, 0, 10, 10], iscrowd=1)],
        num_images=2)
    dets = [_det(1, 1, [0, 0, 10, 10], 0.8), _det(2, 1, [30, 30, 10, 20], 0.5), _det(1, 1, [0, 0, 10, 10], 0.95),
            _det(2, 1, [0, 0, 10, 10], 0.9), _det(1, 1, [20, 0, 10, 10], 0.7), _det(2, 1, [80, 80, 10, 10], 0.6),
            _det(2, 1, [60, 0, 10, 10], 0.4), _det(1, 2, [0, 0, 5, 5], 0.3)]
    return gt, dets


def test_voc_map_hand_computed(voc_set) -> None:
    gt, dets = voc_set
    result = voc_map(gt, dets)
    assert result.per_class["cat"] == pytest.approx(13 / 15)
    assert result.per_class["bird"] == 0.0 and math.isnan(result.per_class["dog"])
    assert result.map50 == pytest.approx(13 / 30)
    assert result.to_json() == {"mAP50": pytest.approx(13 / 30), "method": "all points",
                                "per_class": {"cat": pytest.approx(13 / 15), "dog": None, "bird": 0.0}}
    eleven = voc_map(gt, dets, eleven_point=True)
    assert eleven.per_class["cat"] == pytest.approx(9.4 / 11)
    assert eleven.to_json()["method"] == "11 points"


def _reference_voc_ap(gt: dict, dets: list[dict], category: int, eleven_point: bool) -> float:
    """VOC devkit's evaluation written out plainly: a loop over the detections in score order."""
    def iou(a, b):
        ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
        w, h = min(ax2, bx2) - max(a[0], b[0]), min(ay2, by2) - max(a[1], b[1])
        inter = max(w, 0) * max(h, 0)
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    boxes: dict[int, list] = {}
    for a in gt["annotations"]:
        if a["category_id"] == category:
            boxes.setdefault(a["image_id"], []).append([a["bbox"], bool(a["iscrowd"] or a.get("ignore")), False])
    positives = sum(not difficult for objs in boxes.values() for _, difficult, _ in objs)
    if positives == 0:
        return math.nan
    tp, fp = [], []
    for d in sorted((d for d in dets if d["category_id"] == category), key=lambda d: -d["score"]):
        best, best_iou = None, -math.inf
        for obj in boxes.get(d["image_id"], []):
            overlap = iou(d["bbox"], obj[0])
            if overlap > best_iou:
                best, best_iou = obj, overlap
        if best is not None and best_iou >= 0.5:
            if best[1]:
                continue
            if not best[2]:
                best[2] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    tp_sum, fp_sum, recall, precision = 0, 0, [], []
    for t, f in zip(tp, fp):
        tp_sum += t
        fp_sum += f
        recall.append(tp_sum / positives)
        precision.append(tp_sum / (tp_sum + fp_sum))
    if eleven_point:
        total = 0.0
        for i in range(11):
            at = [p for r, p in zip(recall, precision) if r >= i / 10]
            total += max(at) if at else 0.0
        return total / 11
    mrec, mpre = [0.0, *recall, 1.0], [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def test_voc_map_matches_plain_reference() -> None:
    rng = np.random.default_rng(0)
    annotations, dets = [], []
    for image_id in range(1, 9):
        for _ in range(rng.integers(0, 6)):
            xy, wh = rng.uniform(0, 80, 2), rng.uniform(5, 30, 2)
            category = int(rng.integers(1, 4))
            flags = {"ignore": 1} if rng.random() < 0.15 else {}
            annotations.append(_ann(image_id, category, [*xy.round(1).tolist(), *wh.round(1).tolist()], **flags))
            for _ in range(rng.integers(0, 3)):  # detections near the box, some with the wrong class
                jitter = rng.normal(0, 3, 4)
                box = [*(xy + jitter[:2]).tolist(), *np.maximum(wh + jitter[2:], 1).tolist()]
                label = category if rng.random() < 0.8 else int(rng.integers(1, 4))
                dets.append(_det(image_id, label, box, float(rng.random())))
        for _ in range(rng.integers(0, 3)):  # and some on nothing
            dets.append(_det(image_id, int(rng.integers(1, 4)), [*rng.uniform(0, 90, 2).tolist(), 8.0, 8.0],
                             float(rng.random())))
    gt = _gt([(1, "a"), (2, "b"), (3, "c")], annotations, num_images=8)
    for eleven_point in (False, True):
        ours = voc_map(gt, dets, eleven_point=eleven_point)
        for category, name in ((1, "a"), (2, "b"), (3, "c")):
            expected = _reference_voc_ap(gt, dets, category, eleven_point)
            assert ours.per_class[name] == pytest.approx(expected, abs=1e-12), (name, eleven_point)
        assert 0 < ours.map50 < 1


# ---------------------------------------------------------------- simpledet plot

def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _write_log(run: Path, lines: list[str], end: str = "\n") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("\n".join(lines) + end)
    return run


TRAIN_LINES = [json.dumps({"iteration": i, "lr": 0.01 * min(1, i / 20), "loss": 2.0 / i, "loss_cls": 1.0 / i,
                           "loss_box": 0.5 / i, "images_per_s": 30.0, "loss_scale": 65536.0})
               for i in range(5, 55, 5)]


def test_plot_command_draws_losses_and_evaluations(capsys, tmp_path) -> None:
    stats = {"AP": 0.1, "AP50": 0.3, "AP75": 0.05, "APs": -1.0, "APm": 0.1, "APl": 0.2,
             "AR1": 0.1, "AR10": 0.2, "AR100": 0.25, "ARs": -1.0, "ARm": 0.2, "ARl": 0.3}
    lines = TRAIN_LINES[:5] + [json.dumps({"iteration": 25, "eval": stats})] + TRAIN_LINES[5:] + \
        [json.dumps({"iter": 50, "eval": {k: v + 0.1 for k, v in stats.items()}})]
    run = _write_log(tmp_path / "run", lines)
    code, out, _ = _run(capsys, "plot", run)
    assert code == 0
    for name in ("loss.png", "lr.png", "eval.png"):
        assert_png(run / "plots" / name)
        assert str(run / "plots" / name) in out
    assert "no evaluation records" not in out


def test_plot_command_without_evaluations_and_cut_last_line(capsys, tmp_path) -> None:
    # a last line cut short (no newline: a write in progress) is skipped, the rest drawn
    run = _write_log(tmp_path / "run", [*TRAIN_LINES, '{"iteration": 55, "lr": 0.0'], end="")
    code, out, _ = _run(capsys, "plot", run, "--out", tmp_path / "figures")
    assert code == 0 and "no evaluation records" in out
    assert_png(tmp_path / "figures" / "loss.png")
    assert not (tmp_path / "figures" / "eval.png").exists()


@pytest.mark.parametrize("lines, expected", [
    (None, "metrics.jsonl: not found"),
    ([""], "metrics.jsonl: no records"),
    ([TRAIN_LINES[0], "{not json", TRAIN_LINES[1]], "metrics.jsonl, line 2: not JSON"),
    ([TRAIN_LINES[0], "[1, 2]"], "metrics.jsonl, line 2: expected a JSON object"),
    ([TRAIN_LINES[0], '{"loss": 1.0}'], "metrics.jsonl, line 2: no iteration number"),
    ([TRAIN_LINES[0], '{"iteration": 9, "loss": "high"}'], "metrics.jsonl, line 2: loss is not a number"),
    (['{"iteration": 9, "eval": [0.1]}'], "metrics.jsonl, line 1: 'eval' must map"),
])
def test_plot_command_refuses_bad_logs(capsys, tmp_path, lines, expected) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if lines is not None:
        _write_log(run, lines)
    code, _, err = _run(capsys, "plot", run)
    assert code == 2 and expected in err and str(run) in err


def test_plots_need_the_extra(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    run = _write_log(tmp_path / "run", TRAIN_LINES)
    code, _, err = _run(capsys, "plot", run)
    assert code == 2 and "simpledet-torch[plots]" in err
    # eval refuses before it loads the config or runs the model
    code, _, err = _run(capsys, "eval", tmp_path / "no_config.py", "--weights", tmp_path / "none", "--plots")
    assert code == 2 and "simpledet-torch[plots]" in err


# ---------------------------------------------------------------- simpledet eval --plots --metric voc

def test_eval_plots_and_voc(capsys, tmp_path, shapes_dir) -> None:
    from simpledet import build_model, load_config
    from simpledet.engine.checkpoint import save_weights

    torch.manual_seed(0)
    gt = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    kept = {im["id"] for im in gt["images"][:4]}  # four images are enough, and quick
    gt = {**gt, "images": gt["images"][:4], "annotations": [a for a in gt["annotations"] if a["image_id"] in kept]}
    (tmp_path / "val4.json").write_text(json.dumps(gt))
    overrides = [*shapes_overrides(shapes_dir), f"data.val.ann_file={tmp_path / 'val4.json'}"]
    weights = tmp_path / "random.safetensors"
    save_weights(build_model(load_config(QUICKSTART, overrides)), weights)
    out = tmp_path / "eval"
    code, printed, _ = _run(capsys, "eval", QUICKSTART, "--weights", weights, "--out", out, "--plots",
                            "--metric", "voc", *overrides)
    assert code == 0 and "VOC mAP @[ IoU=0.50 ] (all points, VOC2010+)" in printed

    detections = json.loads((out / "detections.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    expected = evaluate_detections(gt, detections)
    assert metrics["per_class"] == {name: None if math.isnan(ap) else pytest.approx(ap)
                                    for name, ap in expected.per_category}
    assert metrics["voc"] == json.loads(json.dumps(voc_map(gt, detections).to_json()))
    confusion = confusion_matrix(gt, detections)
    assert json.loads((out / "confusion_matrix.json").read_text()) == confusion.to_json()
    assert confusion.matrix[:-1].sum() == len(gt["annotations"])  # every box has its row
    for name in ("pr_curves.png", "confusion_matrix.png"):
        assert_png(out / name)
    pictures = sorted((out / "worst_images").iterdir())
    chosen = worst_images(confusion.errors)
    assert len(pictures) == len(chosen) > 0
    assert pictures[0].name.startswith(f"01_missed{chosen[0][1]}_false{chosen[0][2]}_")
    for path in pictures:
        assert_png(path)
