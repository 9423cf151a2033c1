"""bench/gpu_suite.sh --small runs every benchmark of the GPU suite end to end on the CPU, so that a
rare GPU lease is not spent finding a broken script."""

import os
import re
import subprocess
import sys

from .conftest import REPO


def test_gpu_suite_small_runs_end_to_end(tmp_path):
    out = tmp_path / "suite"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="2")
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), "--small", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    for expected in ("ratio",                   # bench/speed.py, train and inference
                     "throughput (batch 2)",    # bench/infer_speed.py
                     "loader / model",          # bench/loader_speed.py
                     "max stat difference",     # bench/score_speed.py
                     "train wall seconds",      # the quick start trained on the device
                     "host ms by part",         # bench/profile_step.py
                     "SimpleDet zoo, per GPU",  # bench/train_speed.py
                     "Average Precision"):      # ... and evaluated
        assert expected in summary, expected
    # score_speed: the same 12 numbers as pycocotools (to float64 rounding of the means)
    assert float(re.search(r"max stat difference (\S+)", summary).group(1)) < 1e-12
    for name in ("speed_amp.json", "speed_fp32.json", "infer_speed.json"):
        assert (out / name).is_file(), name
