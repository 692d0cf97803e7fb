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


@pytest.fixture
def stopped_image_cache(monkeypatch):
    """``stop(paths, out, size, chunk)`` caches CLEVR images into ``out`` and is stopped (Ctrl-C)
    after the first chunk; it returns a list that then records the size of every chunk read."""
    import relnet.tasks.clevr.data as data

    load = data._load_image

    def stop(paths, out, size, chunk) -> list:
        calls = []

        def stop_after_one_chunk(job):
            calls.append(len(job[0]))
            if len(calls) == 2:
                raise KeyboardInterrupt
            return load(job)

        monkeypatch.setattr(data, "_load_image", stop_after_one_chunk)
        with pytest.raises(KeyboardInterrupt):
            data.cache_images(paths, out, size, workers=1, progress=False, chunk=chunk)
        calls.clear()
        monkeypatch.setattr(data, "_load_image", lambda job: calls.append(len(job[0])) or load(job))
        return calls

    return stop
