"""`simpledet export --format torch-export`: a torch.export ExportedProgram (.pt2) of the whole
detector, with the image's height and width free, finds the eager model's detections at sizes
other than the traced one, and runs in a Python that cannot import simpledet (torch and
torchvision alone). TridentNet here: three branches, per-branch scale ranges and the merging NMS;
tests/test_export_onnx.py exports the other families (the same program, in ONNX)."""

import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision

from simpledet.cli import main
from simpledet.deploy.export_program import nms_keeps_any_count

from .conftest import REPO
from .test_export_onnx import assert_same_detections, eager_detections, eager_predictor, sample_images, saved_checkpoint

CONFIG = REPO / "configs/quickstart/tridentnet_r18c4_shapes.py"


@pytest.fixture(scope="module")
def trident_program(tmp_path_factory):
    """(checkpoint, .pt2) of the quick-start TridentNet with seeded random weights."""
    weights = saved_checkpoint(CONFIG, tmp_path_factory.mktemp("program"))
    program = weights.with_suffix(".pt2")
    assert main(["export", "--weights", str(weights), "--format", "torch-export", "--out", str(program)]) == 0
    return weights, program


def test_program_finds_the_eager_detections_where_simpledet_cannot_be_imported(trident_program, photo_path,
                                                                               shapes_dir, tmp_path):
    weights, program = trident_program
    images = sample_images(photo_path, shapes_dir)
    assert len({tuple(image.shape) for image in images}) == len(images)  # none the traced size either
    torch.save(images, tmp_path / "images.pt")
    child = textwrap.dedent(f"""
        import sys
        sys.modules["simpledet"] = None  # the editable install would otherwise be found
        try:
            import simpledet
        except ImportError:
            pass
        else:
            raise SystemExit("simpledet is importable")
        import torch
        import torchvision  # registers the NMS and RoIAlign operators the graph calls
        runnable = torch.export.load({str(program)!r}).module()
        images = torch.load({str(tmp_path / "images.pt")!r})
        with torch.no_grad():
            torch.save([tuple(runnable(image)) for image in images], {str(tmp_path / "outputs.pt")!r})
        """)
    # -I: no PYTHONPATH, no user site-packages, not the current folder
    subprocess.run([sys.executable, "-I", "-c", child], check=True, timeout=300, cwd=tmp_path)
    eager = eager_predictor(CONFIG, weights)
    for image, (boxes, scores, labels) in zip(images, torch.load(tmp_path / "outputs.pt")):
        got = {"boxes": boxes, "scores": scores, "labels": labels}
        assert assert_same_detections(eager_detections(eager, image), got) >= 5


def test_a_traced_nms_may_keep_a_single_box():
    """torchvision's fake NMS tells a trace that NMS keeps two boxes or more; the graphs exported
    here run where it keeps one (an image with a single detection)."""
    class KeepBest(torch.nn.Module):
        def forward(self, boxes, scores):
            return torchvision.ops.nms(boxes, scores, 0.5)

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    count = torch.export.Dim("count", min=2, max=1000)
    with nms_keeps_any_count():
        program = torch.export.export(KeepBest(), (boxes, scores), dynamic_shapes=({0: count}, {0: count}))
    run = program.module()
    assert run(boxes, scores).tolist() == [0, 2]
    assert run(boxes[:2], scores[:2]).tolist() == [0]  # one kept
    # outside it, torchvision's registration is back
    plain = torch.export.export(KeepBest(), (boxes, scores), dynamic_shapes=({0: count}, {0: count})).module()
    with pytest.raises(RuntimeError, match=">= 2"):
        plain(boxes[:2], scores[:2])
