"""bench/speed.py, the interleaved comparison with torchvision that GPU time is spent on first:
a graphed variant that breaks must cost its own row only."""

import json
import sys

import pytest
import torch

from tests.graph_standin import FakeGraphs
from tests.helpers import REPO


@pytest.fixture
def speed(monkeypatch):
    """bench/speed.py, freshly imported (a test patches its globals)."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    sys.modules.pop("speed", None)
    import speed
    return speed


def test_a_graphed_variant_that_raises_is_named_and_the_other_rows_still_reported(speed, monkeypatch, tmp_path, capsys):
    FakeGraphs(monkeypatch)
    enable = speed.enable_cuda_graphs

    def enable_and_break_the_full_graphs(model, max_shapes, device, heads=True):
        enable(model, max_shapes, torch.device("cuda"), heads=heads)  # the stand-in captures on the CPU
        if heads:  # ours_graphs: its training step fails, as a replay error on a GPU would
            def fail(module, args):
                if module.training:
                    raise RuntimeError("planted replay failure")
            model.register_forward_pre_hook(fail)

    monkeypatch.setattr(speed, "enable_cuda_graphs", enable_and_break_the_full_graphs)
    out = tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["speed.py", "--cuda-graphs", "--height", "128", "--width", "160",
                                      "--repeats", "1", "--warmup", "1", "--json", str(out)])
    speed.main()

    results = json.loads(out.read_text())
    assert results["failed"] == {"ours_graphs": "RuntimeError: planted replay failure"}
    train = results["train"]
    assert "ours_graphs" not in train and "ratio_ours_graphs_over_torchvision" not in train
    for name in ("ours", "torchvision", "ours_graphs_eager_heads"):
        assert train[name]["seconds"] > 0, name
    assert train["ratio_ours_graphs_eager_heads_over_torchvision"] == pytest.approx(
        train["ours_graphs_eager_heads"]["seconds"] / train["torchvision"]["seconds"])
    printed = capsys.readouterr().out
    assert "FAILED    ours_graphs: RuntimeError: planted replay failure" in printed
    assert "ours with train.cuda_graphs, R-CNN stage eager" in printed


def test_a_failure_of_our_eager_model_is_not_swallowed(speed, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("planted failure of the eager step")

    monkeypatch.setattr(speed, "time_train_step", fail)
    monkeypatch.setattr(sys, "argv",
                        ["speed.py", "--height", "128", "--width", "160", "--repeats", "1", "--warmup", "0"])
    with pytest.raises(RuntimeError, match="planted failure of the eager step"):
        speed.main()
