"""`simpledet export --format onnx`: the whole detector as one ONNX graph, run by ONNX Runtime on
the CPU, finds the detections the eager model finds, on a real photograph and on shapes images of
several sizes (the graph was traced at one other size).

Matching (`assert_same_detections`): of the eager detections scoring >= 0.1, at least 98% have
a counterpart with the same label, every box coordinate within 0.5 px and the score within 1e-3,
each counterpart used once; matched masks (thresholded at 0.5) overlap with IoU >= 0.98, or
differ in at most two pixels where a mask is under 100 pixels.

Exporting costs 15-30 s per model on this machine, so the default run exports one model through
the command: the quick-start Mask R-CNN (Faster R-CNN's FPN detector and the mask branch), with its
checkpoint's categories. SIMPLEDET_TEST_ALL_EXPORTS=1 adds every other family: Faster R-CNN FPN
and C4, Cascade, TridentNet, TridentFast, DCN (v1 and modulated), and torchvision's Faster / Mask
R-CNN and RetinaNet R50-FPN with converted random weights, plus the float16 export."""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from simpledet import build_model, load_config
from simpledet.api import Predictor
from simpledet.cli import main
from simpledet.config import to_dict
from simpledet.data.image_io import read_image
from simpledet.deploy.export_onnx import onnx_model, save_onnx
from simpledet.deploy.export_program import export_program
from simpledet.deploy.exportable import ExportableDetector, example_image
from simpledet.deploy.onnx_runtime import OnnxDetector
from simpledet.engine.checkpoint import save_weights
from simpledet.errors import UserError
from simpledet.modeling.detectors.detector import DetectorConfig

from .conftest import REPO

QUICKSTART = REPO / "configs/quickstart"
ALL_EXPORTS = os.environ.get("SIMPLEDET_TEST_ALL_EXPORTS") == "1"
every_family = pytest.mark.skipif(not ALL_EXPORTS, reason="SIMPLEDET_TEST_ALL_EXPORTS=1 exports every family")
CATEGORIES = (["circle", "square", "triangle", "star"], [3, 5, 7, 9])  # ids unlike labels 1..4


def assert_same_detections(expected: dict, got: dict, min_score: float = 0.1, box_tol: float = 0.5,
                           score_tol: float = 1e-3, min_matched: float = 0.98, mask_iou: float = 0.98) -> int:
    """At least min_matched of `expected`'s detections scoring >= min_score have a counterpart in
    `got` (same label, boxes within box_tol px, score within score_tol), each used once; matched
    masks, where given, overlap with IoU >= mask_iou. Returns the number compared."""
    wanted = (expected["scores"] >= min_score).nonzero().flatten().tolist()
    assert wanted, "nothing to compare: no detection above min_score"
    free = list(range(len(got["scores"])))
    matched = 0
    for i in wanted:
        for j in free:
            if (int(got["labels"][j]) == int(expected["labels"][i])
                    and (got["boxes"][j] - expected["boxes"][i]).abs().max() <= box_tol
                    and abs(float(got["scores"][j]) - float(expected["scores"][i])) <= score_tol
                    and ("mask_scores" not in expected
                         or abs(float(got["mask_scores"][j]) - float(expected["mask_scores"][i])) <= score_tol)):
                if "masks" in expected:
                    # IoU >= mask_iou: at most (1 - mask_iou) of the union differs; or two pixels,
                    # where a mask is so small that one pixel is more than that
                    a, b = expected["masks"][i] > 0.5, got["masks"][j] > 0.5
                    differing, union = int((a ^ b).sum()), int((a | b).sum())
                    assert differing <= max((1 - mask_iou) * union, 2), \
                        f"mask of detection {i}: {differing} of {union} pixels differ"
                free.remove(j)
                matched += 1
                break
    assert matched >= min_matched * len(wanted), f"{matched} of {len(wanted)} detections matched"
    return len(wanted)


def as_dict(outputs: tuple, names=("boxes", "scores", "labels", "masks", "mask_scores")) -> dict:
    return {name: value.detach() for name, value in zip(names, outputs)}


def spread_scores(model: torch.nn.Module, cls_std: float = 0.3) -> None:
    """Random classifiers give every class about the same probability; wider weights spread the
    scores over (0, 1), so that near-ties do not decide which detections are kept. Deformable
    convolutions get offsets (zero ones would make them plain convolutions)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__ == "BoxPredictor":
                m.cls_score.weight.copy_(cls_std * torch.randn(m.cls_score.weight.shape, generator=g))
            if type(m).__name__ == "DeformConv2d":  # fractional shifts of -1.5..1.5 px per tap
                m.offset_conv.bias[:m.num_offsets] = 3 * torch.rand(m.num_offsets, generator=g) - 1.5


def sample_images(photo_path: Path, shapes_dir: Path) -> list[torch.Tensor]:
    """The photograph at two sizes and aspect ratios, and a shapes image: none the traced size."""
    photo = read_image(photo_path)[None]
    resized = [F.interpolate(photo, size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)
               for size in ((120, 100), (150, 230))]
    return resized + [read_image(sorted((shapes_dir / "val").glob("*.png"))[0])]


MASK_CONFIG = QUICKSTART / "mask_r18_fpn_shapes.py"


def saved_checkpoint(config: Path, folder: Path) -> Path:
    """`config`'s model with seeded random weights, saved as training saves it: the config and
    the categories in the JSON beside the weights."""
    torch.manual_seed(0)
    cfg = load_config(config)
    model = build_model(cfg, load_pretrained=False)
    spread_scores(model)
    path = folder / (config.stem + ".safetensors")
    save_weights(model, path, {"iteration": 0, "config": to_dict(cfg), "categories": CATEGORIES[0],
                               "category_ids": CATEGORIES[1]})
    return path


def eager_predictor(config: Path, weights: Path) -> Predictor:
    return Predictor(load_config(config), weights, device="cpu", category_names=CATEGORIES[0],
                     label_to_category_id={i + 1: cat for i, cat in enumerate(CATEGORIES[1])})


def eager_detections(predictor: Predictor, image: torch.Tensor) -> dict:
    """The eager Predictor's detections, labels as category ids (what an exported graph outputs)."""
    det = predictor(image)
    det["labels"] = torch.tensor(det["category_ids"], dtype=torch.int64)
    return det


@pytest.fixture(scope="session")
def quickstart_checkpoint(tmp_path_factory) -> Path:
    """The quick-start Mask R-CNN's checkpoint."""
    return saved_checkpoint(MASK_CONFIG, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def quickstart_onnx(quickstart_checkpoint) -> Path:
    out = quickstart_checkpoint.with_suffix(".onnx")
    assert main(["export", "--weights", str(quickstart_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_onnx_finds_the_eager_detections_and_masks(quickstart_checkpoint, quickstart_onnx, photo_path, shapes_dir):
    eager = eager_predictor(MASK_CONFIG, quickstart_checkpoint)
    exported = OnnxDetector(quickstart_onnx)
    assert exported.category_names == CATEGORIES[0] and exported.category_ids == CATEGORIES[1]
    for image in sample_images(photo_path, shapes_dir):
        expected = eager_detections(eager, image)
        got = exported(image)
        assert got["labels"].dtype == torch.int64 and got["boxes"].dtype == torch.float32
        assert got["masks"].shape == (len(got["scores"]), 1, *image.shape[-2:])
        assert assert_same_detections(expected, got) >= 5
        names = dict(zip(CATEGORIES[1], CATEGORIES[0]))
        assert got["names"] == [names[cat] for cat in got["labels"].tolist()]


def test_predict_with_onnxruntime_writes_what_eager_predict_writes(quickstart_checkpoint, quickstart_onnx,
                                                                   shapes_dir, tmp_path):
    images = [str(p) for p in sorted((shapes_dir / "val").glob("*.png"))[:2]]
    eager_json, onnx_json = tmp_path / "eager.json", tmp_path / "onnx.json"
    assert main(["predict", "--weights", str(quickstart_checkpoint), *images, "--out", str(eager_json)]) == 0
    assert main(["predict", "--backend", "onnxruntime", "--model", str(quickstart_onnx), *images,
                 "--out", str(onnx_json), "--vis", str(tmp_path / "vis")]) == 0
    expected, got = json.loads(eager_json.read_text()), json.loads(onnx_json.read_text())
    for name in images:
        def records(rs, name=name):
            rows = [r for r in rs if r["file_name"] == name]
            xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)]).reshape(-1, 4)
            return {"boxes": xyxy, "scores": torch.tensor([r["score"] for r in rows]),
                    "labels": torch.tensor([r["category_id"] for r in rows])}
        assert set(records(got)["labels"].tolist()) <= set(CATEGORIES[1])
        # rounding to 3 decimals for boxes and 5 for scores is within the tolerances
        assert_same_detections(records(expected), records(got))
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == sorted(Path(p).stem + ".png" for p in images)


def test_refusals_name_the_setting_and_exit_2(quickstart_checkpoint, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "x.onnx")
    base = ["export", "--weights", str(quickstart_checkpoint), "--format", "onnx", "--out", out]
    # soft-NMS loops over picks in Python: no graph expresses it
    assert main(base + ["--set", "model.roi_heads.nms_method=soft_linear"]) == 2
    assert "soft-NMS" in capsys.readouterr().err
    assert main(base + ["--set", "test.flip=true"]) == 2
    assert "test.flip" in capsys.readouterr().err
    assert main(base + ["--opset", "11"]) == 2
    assert "opset 16" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if the extra were not installed
    assert main(base) == 2
    assert "simpledet-torch[deploy]" in capsys.readouterr().err
    assert not Path(out).exists()


def test_onnx_detector_refuses_a_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="bad.onnx: ONNX Runtime cannot load it"):
        OnnxDetector(bad)
    with pytest.raises(UserError, match="no such ONNX file"):
        OnnxDetector(tmp_path / "missing.onnx")


# ---------------------------------------------------------------- every family (opt-in)
def quickstart_model(name: str, *overrides: str, cls_std: float = 0.3) -> tuple[torch.nn.Module, DetectorConfig]:
    torch.manual_seed(0)
    cfg = load_config(QUICKSTART / name, list(overrides))
    model = build_model(cfg, load_pretrained=False).eval()
    spread_scores(model, cls_std)
    return model, cfg.model


def torchvision_model(family: str) -> tuple[torch.nn.Module, DetectorConfig]:
    """Our torchvision config at a small input size, with a torchvision model's random weights
    converted (the parity tests' references), score threshold 0 as there."""
    from simpledet.weights.torchvision import convert_torchvision

    from .test_mask_parity import torchvision_model as mask_reference
    from .test_retinanet_parity import torchvision_model as retina_reference
    from .test_torchvision_parity import torchvision_model as faster_reference

    reference, config, head = {"faster": (faster_reference, "fasterrcnn", "roi_heads"),
                               "mask": (mask_reference, "maskrcnn", "roi_heads"),
                               "retina": (retina_reference, "retinanet", "head")}[family]
    cfg = load_config(REPO / f"configs/torchvision/{config}_resnet50_fpn.py",
                      [f"model.{head}.score_thresh=0", "model.input.min_size=(160,)", "model.input.max_size=256"])
    model = build_model(cfg, load_pretrained=False).eval()
    model.load_state_dict(convert_torchvision(reference().state_dict())[0])
    calibrate_frozen_bn(model, example_image(160, 200, seed=3))
    return model, cfg.model


@torch.no_grad()
def calibrate_frozen_bn(model: torch.nn.Module, image: torch.Tensor) -> None:
    """Each frozen BN's statistics set to those of its input on `image`, layer after layer (the
    torchvision configs run their BN unfolded). A random ResNet-50's activations otherwise grow to
    thousands by C5, where float32 rounding moves scores by 1e-2 between two runtimes' kernels."""
    from simpledet.modeling.norm import FrozenBatchNorm2d

    def take_statistics(module, args):
        module.running_mean.copy_(args[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(args[0].var(dim=(0, 2, 3)))
        module._folded = None

    hooks = [m.register_forward_pre_hook(take_statistics) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    try:
        model([image])
    finally:
        for hook in hooks:
            hook.remove()


FAMILIES = {
    "faster_fpn": lambda: quickstart_model("faster_r18_fpn_shapes.py"),
    "faster_c4": lambda: quickstart_model("faster_r18c4_shapes.py"),
    "cascade": lambda: quickstart_model("cascade_r18_fpn_shapes.py"),
    "tridentnet": lambda: quickstart_model("tridentnet_r18c4_shapes.py"),
    "tridentfast": lambda: quickstart_model("tridentnet_r18c4_shapes.py", "model.trident.test_branches=(1,)"),
    # a bottleneck ResNet (deformable blocks are bottlenecks), whose C5 head saturates at std 0.3
    "dcn": lambda: quickstart_model("faster_r18c4_shapes.py", "model.backbone.depth=50", "model.backbone.base_width=16",
                                    "model.backbone.dcn_blocks=(0,0,1,0)", cls_std=0.1),
    "dcnv2": lambda: quickstart_model("faster_r18c4_shapes.py", "model.backbone.depth=50",
                                      "model.backbone.base_width=16", "model.backbone.dcn_blocks=(0,0,1,0)",
                                      "model.backbone.dcn_modulated=true", cls_std=0.1),
    "mask_scoring": lambda: quickstart_model("mask_scoring_r18_fpn_shapes.py"),
    "torchvision_faster": lambda: torchvision_model("faster"),
    "torchvision_mask": lambda: torchvision_model("mask"),
    "torchvision_retina": lambda: torchvision_model("retina"),
}


@every_family
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_exports_with_parity(family, photo_path, shapes_dir, tmp_path):
    model, spec = FAMILIES[family]()
    detector = ExportableDetector(model, category_ids=None, masks=spec.predicts_masks,
                                  mask_scores=spec.predicts_mask_scores)
    program = export_program(detector, example_image())
    runnable = program.module()
    images = sample_images(photo_path, shapes_dir)
    expected = []
    with torch.no_grad():
        for image in images:
            expected.append(as_dict(detector(image)))
            assert_same_detections(expected[-1], as_dict(runnable(image)), min_score=score_floor(expected[-1]))
    save_onnx(onnx_model(program, detector.output_names), tmp_path / "model.onnx")
    exported = OnnxDetector(tmp_path / "model.onnx")
    for image, want in zip(images, expected):
        assert_same_detections(want, exported(image), min_score=score_floor(want))


def score_floor(detections: dict, count: int = 10) -> float:
    """0.1, or lower where random weights score fewer than `count` detections that high (random
    RetinaNet weights score every anchor below 0.05): the scores of the best `count` are compared."""
    scores = detections["scores"].sort(descending=True).values
    return min(0.1, float(scores[min(count, len(scores)) - 1])) if len(scores) else 0.1


@every_family
def test_half_precision_export_runs_to_its_own_tolerance(quickstart_checkpoint, photo_path, shapes_dir, tmp_path):
    """float16 weights and computation: ONNX Runtime's CPU provider runs the graph here; 90% of
    the detections agree with float32 to 1 px and 1e-2 in score, their masks to IoU 0.9."""
    out = tmp_path / "half.onnx"
    assert main(["export", "--weights", str(quickstart_checkpoint), "--format", "onnx", "--half", "--out",
                 str(out)]) == 0
    import onnx

    weights = onnx.load(str(out)).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    eager = eager_predictor(MASK_CONFIG, quickstart_checkpoint)
    exported = OnnxDetector(out)
    for image in sample_images(photo_path, shapes_dir):
        assert_same_detections(eager_detections(eager, image), exported(image), box_tol=1.0, score_tol=1e-2,
                               min_matched=0.9, mask_iou=0.9)


def test_export_refuses_a_graph_that_does_not_reproduce_the_model(quickstart_checkpoint, quickstart_onnx):
    """`simpledet export` runs the graph it made in ONNX Runtime and compares it with the model
    before writing it: the written file passed; the same graph checked against a model whose
    classifier was changed is refused, naming what differs."""
    import onnx

    from simpledet.deploy.export_onnx import verify_onnx
    from simpledet.engine.checkpoint import load_weights

    graph = onnx.load(str(quickstart_onnx))
    model = build_model(load_config(MASK_CONFIG), load_pretrained=False).eval()
    load_weights(model, quickstart_checkpoint)
    image = example_image(112, 144, seed=1)
    same = ExportableDetector(model, category_ids=CATEGORIES[1], masks=True, dtype=torch.float32)
    verify_onnx(graph, same, image)  # what the export wrote
    verify_onnx(graph, same, image, quantised=True)  # the INT8 check, by matching, passes it too
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1:] -= 5.0  # every class far less likely
    changed = ExportableDetector(model, category_ids=CATEGORIES[1], masks=True, dtype=torch.float32)
    with pytest.raises(UserError, match="the ONNX graph does not reproduce the model on a 112x144 test image"):
        verify_onnx(graph, changed, image)
    with pytest.raises(UserError, match=r"does not reproduce the quantised model on a 112x144 test image: of the "
                                        r"detections scoring 0.1 or more, \d+ of the model's and \d+ of the graph's"):
        verify_onnx(graph, changed, image, quantised=True)


def test_quantised_check_matches_detections_in_any_order():
    """The INT8 check of `simpledet export`: near-equal detections may swap places and move by an
    8-bit step; a detection with no counterpart (another label, or gone) is named."""
    import numpy as np

    from simpledet.deploy.export_onnx import _unmatched

    expected = [np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], dtype=np.float32),
                np.array([0.50, 0.49, 0.05], dtype=np.float32), np.array([1, 2, 1])]
    swapped = [np.array([[21, 20, 40, 41], [0, 0, 10.5, 10]], dtype=np.float32),
               np.array([0.51, 0.48], dtype=np.float32), np.array([2, 1])]
    assert _unmatched(expected, swapped, min_score=0.1, box_tol=2.0, score_tol=0.03) == []  # 0.05: below the floor
    relabelled = [swapped[0], swapped[1], np.array([2, 2])]
    assert _unmatched(expected, relabelled, min_score=0.1, box_tol=2.0, score_tol=0.03) == [0]
    one = [swapped[0][:1], swapped[1][:1], swapped[2][:1]]
    assert _unmatched(expected, one, min_score=0.1, box_tol=2.0, score_tol=0.03) == [0]
    assert _unmatched(expected, swapped, min_score=0.1, box_tol=0.5, score_tol=0.03) == [1]  # 1 px off
