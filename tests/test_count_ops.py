"""bench/count_ops.py, the CPU count of what a graphed training step launches eagerly, runs and
reports the heads' waits: the RPN's NMS calls (per image and level) at once and three counts
(tests/test_sync_free_heads.py pins the same on a small model)."""

import json
import os
import subprocess
import sys

from .conftest import REPO


def test_count_ops_reports_the_eager_part_of_a_graphed_step(tmp_path):
    out = tmp_path / "count.json"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "count_ops.py"), "--height", "160", "--width", "224",
                           "--only", "ours_tv Faster,ours RetinaNet R50v1-FPN", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    faster, retina = rows["ours_tv Faster R50-FPN"], rows["ours RetinaNet R50v1-FPN"]
    assert (faster["nms_at_once"], faster["nms_in_turn"], faster["other_waits"]) == (10, 0, 3)  # 2 images x 5 levels
    assert 0 < faster["serial_window"]["kernels"] < faster["kernels"] < faster["ops"]
    assert faster["by_part"]["roi_heads"]["kernels"] > 0 and faster["by_part"]["backward"]["kernels"] > 0
    assert retina["other_waits"] == 0 and retina["nms_at_once"] == 0 and retina["kernels"] > 0
    assert "| ours_tv Faster R50-FPN |" in proc.stdout
