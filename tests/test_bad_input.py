"""User mistakes end with one clear message and exit code 2, never a traceback."""

import json
import subprocess
import sys

from simpledet import build_model
from simpledet.cli import main
from simpledet.engine.checkpoint import save_weights

from .helpers import QUICKSTART, shapes_overrides, small_config


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_unknown_config_key_names_nearest(capsys, shapes_dir):
    code, err = run_cli(capsys, "train", QUICKSTART, *shapes_overrides(shapes_dir), "train.max_iters=3")
    assert code == 2 and "train.max_iters" in err and "train.max_iter" in err


def test_bad_override_value(capsys):
    code, err = run_cli(capsys, "train", QUICKSTART, "train.batch_size=two")
    assert code == 2 and "train.batch_size" in err and "two" in err


def test_missing_config_file(capsys, tmp_path):
    code, err = run_cli(capsys, "train", tmp_path / "nope.py")
    assert code == 2 and "nope.py" in err


def test_annotation_file_not_json(capsys, tmp_path, shapes_dir):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [}')
    code, err = run_cli(capsys, "train", QUICKSTART, *shapes_overrides(shapes_dir), f"data.train.ann_file={bad}")
    assert code == 2 and "broken.json" in err


def test_annotation_record_with_wrong_type(capsys, tmp_path, shapes_dir):
    data = json.loads((shapes_dir / "annotations" / "train.json").read_text())
    data["annotations"][3]["bbox"] = "wide"
    bad = tmp_path / "bad_bbox.json"
    bad.write_text(json.dumps(data))
    code, err = run_cli(capsys, "train", QUICKSTART, *shapes_overrides(shapes_dir), f"data.train.ann_file={bad}")
    assert code == 2 and "bad_bbox.json" in err and "annotations[3]" in err


def test_num_classes_mismatch(capsys, shapes_dir):
    code, err = run_cli(capsys, "train", QUICKSTART, *shapes_overrides(shapes_dir), "model.num_classes=7")
    assert code == 2 and "model.num_classes" in err and "4 categories" in err


def test_missing_weights_file(capsys, tmp_path, shapes_dir):
    code, err = run_cli(capsys, "eval", QUICKSTART, "--weights", tmp_path / "none.safetensors",
                        *shapes_overrides(shapes_dir))
    assert code == 2 and "none.safetensors" in err


def test_checkpoint_of_wrong_architecture(capsys, tmp_path, shapes_dir):
    other = build_model(small_config(shapes_dir, "model.num_classes=9"))
    path = tmp_path / "other.safetensors"
    save_weights(other, path)
    code, err = run_cli(capsys, "eval", QUICKSTART, "--weights", path, *shapes_overrides(shapes_dir))
    assert code == 2 and "other.safetensors" in err and "shape" in err


def test_garbage_weights_file(capsys, tmp_path, shapes_dir):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint at all")
    code, err = run_cli(capsys, "eval", QUICKSTART, "--weights", path, *shapes_overrides(shapes_dir))
    assert code == 2 and "garbage.pth" in err


def test_predict_reports_unreadable_image_and_goes_on(capsys, tmp_path, shapes_dir):
    model = build_model(small_config(shapes_dir))
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    bad = tmp_path / "bad.png"
    bad.write_text("no image")
    good = sorted((shapes_dir / "val").glob("*.png"))[0]
    code, err = run_cli(capsys, "predict", QUICKSTART, "--weights", weights, bad, good, "--out", tmp_path / "p.json")
    assert code == 0 and "bad.png" in err
    assert isinstance(json.loads((tmp_path / "p.json").read_text()), list)


def test_console_exit_code_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simpledet", "train", str(tmp_path / "missing.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "missing.py" in proc.stderr and "Traceback" not in proc.stderr
