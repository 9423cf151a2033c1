"""bench/gpu_suite.sh --small runs every benchmark of the GPU suite end to end on the CPU, so that scarce
GPU time is not spent finding a broken script."""

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
    for name in ("speed_amp.json", "infer_speed.json"):
        assert (out / name).is_file(), name


def test_gpu_suite_goes_on_past_a_failing_or_hung_section(tmp_path):
    """A section that fails or hangs is named in the summary and the next one runs: the GPU time is
    not lost to one broken script. Here every benchmark fails at once, and the checks hang."""
    python = tmp_path / "python"
    python.write_text(f"""#!/usr/bin/env bash
case "$1" in
  -c) exec {sys.executable} "$@" ;;
  bench/gpu_checks.py) exec sleep 60 ;;
  *) echo "broken on purpose: $*" >&2; exit 3 ;;
esac
""")
    python.chmod(0o755)
    out = tmp_path / "suite"
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), "--small", "--section-timeout", "3", str(out)],
                          cwd=REPO, env=dict(os.environ, PYTHON=str(python)), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert "!! section failed (stopped at its limit of 3 s): GPU-only correctness checks" in summary
    sections = re.findall(r"^== (.+?)  \[", summary, flags=re.M)
    failures = re.findall(r"^!! section failed \(exit \d+\): (.+)$", summary, flags=re.M)
    # every other section ran, and failed alone
    assert len(sections) == 8 and failures == [s for s in sections if s != "GPU-only correctness checks"]
    assert "suite done in" in summary and "8 section(s) failed" in summary
