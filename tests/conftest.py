from pathlib import Path

import pytest

from relnet.tasks.sort_of_clevr.data import write_dataset


@pytest.fixture(scope="session")
def tiny_sort_of_clevr(tmp_path_factory) -> Path:
    """A small Sort-of-CLEVR dataset shared by the training and CLI tests."""
    out = tmp_path_factory.mktemp("sort-of-clevr")
    write_dataset(out, train_images=12, test_images=6, seed=3, progress=False)
    return out
