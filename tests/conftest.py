import os
from pathlib import Path

import matplotlib
import pytest
import torch

# Under pytest-xdist each worker gets one core; run alone, the suite uses two.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: fastest for tiny nets on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def photo_path() -> Path:
    """A real photograph shipped inside a PyPI package (matplotlib's sample data)."""
    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """The synthetic shapes set, small, shared by the tests that train."""
    from simpledet.data.shapes import generate_shapes

    out = tmp_path_factory.mktemp("shapes")
    generate_shapes(out, num_train=48, num_val=16, seed=0)
    return out


# The longest test modules, started first: with two workers a four-minute test that starts last
# would leave one core idle for its whole length at the end of the run.
LONGEST_FIRST = ("test_gpu_suite.py",)


def pytest_collection_modifyitems(items: list) -> None:
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: the rest keep their order
