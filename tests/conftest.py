import sys
from pathlib import Path

import pytest

from relnet.tasks.sort_of_clevr.data import write_dataset


@pytest.fixture(scope="session")
def tiny_sort_of_clevr(tmp_path_factory) -> Path:
    """A small Sort-of-CLEVR dataset shared by the training and CLI tests."""
    out = tmp_path_factory.mktemp("sort-of-clevr")
    write_dataset(out, train_images=12, test_images=6, seed=3, progress=False)
    return out


@pytest.fixture(scope="session")
def small_datasets(tmp_path_factory) -> dict[str, Path]:
    """A few examples of every task's data (benchmarks/common.py), keyed by task name."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from common import write_small_datasets

    return write_small_datasets(tmp_path_factory.mktemp("small"))
