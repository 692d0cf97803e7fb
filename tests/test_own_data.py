"""docs/own-data.md: its examples run as written (a TensorTask trained by relnet's trainer, and a
shipped model evaluated from Python on data the CLI made)."""

import json
import re
from pathlib import Path

import pytest
import torch

from relnet.errors import ConfigError, DataError
from relnet.tasks import TensorSplit, TensorTask

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_tensor_task_example_trains_an_rn(tmp_path, capsys):
    namespace = {"RUN_DIR": tmp_path / "run"}
    exec(examples()[0], namespace)
    assert namespace["metrics"]["overall"] > 0.9, namespace["metrics"]
    print(f"measured: {namespace['metrics']['overall']:.2%} in {namespace['metrics']['train_seconds']} s")
    assert "test accuracy" in capsys.readouterr().out
    for name in ("checkpoint.pt", "metrics.json", "history.json", "train_log.jsonl", "curves.png", "config.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["data"] == "close-points (in memory)"
    # A stopped run continues: resumed with more epochs, it trains the rest.
    more = namespace["train"](namespace["task"], namespace["preset"], None, tmp_path / "run", epochs=11, resume=True,
                              progress=False)
    assert more["epochs"] == 11


def test_the_shipped_model_example_runs(small_datasets, monkeypatch):
    monkeypatch.chdir(small_datasets["sort-of-clevr"].parent)
    code = examples()[1].replace('"data/sort-of-clevr"', repr(str(small_datasets["sort-of-clevr"])))
    namespace = {}  # the example imports what it uses
    exec(code, namespace)
    assert set(namespace["metrics"]["by_kind"]) == {"non_relational", "binary"}
    assert namespace["logits"].shape == (8, 11)


def test_tensor_splits_and_tasks_refuse_what_does_not_fit():
    with pytest.raises(DataError, match="one row per target"):
        TensorSplit("train", {"objects": torch.zeros(3, 2, 2)}, torch.zeros(4))
    with pytest.raises(DataError, match="non-empty dict"):
        TensorSplit("train", {}, torch.zeros(4))
    split = TensorSplit("train", {"objects": torch.zeros(3, 2, 2)}, torch.zeros(3))
    with pytest.raises(ConfigError, match="evaluation split 'test'"):
        TensorTask("x", {"train": split}, build_model=lambda preset, info: None)
    with pytest.raises(DataError, match="has no split 'valid'"):
        TensorTask("x", {"train": split, "test": split}, build_model=lambda p, i: None).load(None, "valid", None)
