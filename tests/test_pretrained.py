"""Pretrained models: export from a run, load by name, evaluate from the CLI; and the accuracy of
every model that ships, on freshly generated data of a seed no model was trained on."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from relnet import pretrained
from relnet.cli import main
from relnet.preset import Preset
from relnet.tasks import get_task
from relnet.tasks.babi.data import TASK_NAMES
from relnet.tasks.physics.data import write_dataset as write_physics
from relnet.tasks.sort_of_clevr.data import write_dataset
from relnet.train import evaluate

FRESH_SEED = 20261126  # the shipped models trained on seed 0's data
SHARED_BABI = Path(__file__).resolve().parents[2] / "shared" / "data" / "babi" / "en-valid-10k"
# name -> the accuracy each question kind must reach on fresh data. The shipped pixel model measured
# 99.93% / 97.02% on seed 0's test split and 99.91% / 96.84% on 40,000 questions of another seed
# (docs/benchmarks.md); on these 5,200 the binary floor is a point under the 95% target, as the
# issue that set it asks (a standard error of about 0.35 points here).
SHIPPED = {
    "sort-of-clevr-pixels": {"non_relational": 0.99, "binary": 0.94},
    "sort-of-clevr-state": {"non_relational": 0.99, "binary": 0.95},
}


def test_export_load_and_eval_round_trip(tiny_sort_of_clevr, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "FOLDER", tmp_path / "shipped")
    run = tmp_path / "run"
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out", str(run),
                 "--epochs", "1", "--no-progress", "--precision", "fp32"]) == 0
    assert main(["export", str(run), "--name", "tiny", "--commit", "abc123", "--dir", str(tmp_path / "shipped")]) == 0
    assert pretrained.names() == ["tiny"]
    card = pretrained.card("tiny")
    assert card["preset"]["name"] == "sort-of-clevr-state" and card["commit"] == "abc123" and card["data_seed"] == 0
    assert card["preset"]["epochs"] == 1  # the run's --epochs, not the preset's 10
    assert card["command"].startswith("relnet train --preset sort-of-clevr-state --data")
    # The weights file holds tensors only: safetensors' header is a length and JSON.
    raw = (tmp_path / "shipped" / "tiny.safetensors").read_bytes()
    assert raw[8:9] == b"{"
    capsys.readouterr()
    assert main(["eval", "pretrained:tiny", "--data", str(tiny_sort_of_clevr), "--json", "--no-progress",
                 "--precision", "fp32"]) == 0
    from_pretrained = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--data", str(tiny_sort_of_clevr), "--json", "--no-progress",
                 "--precision", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"] == from_pretrained["overall"]
    answers = tmp_path / "answers.txt"
    assert main(["predict", "pretrained:tiny", "--data", str(tiny_sort_of_clevr), "--out", str(answers),
                 "--no-progress"]) == 0
    lines = answers.read_text().splitlines()
    assert len(lines) == from_pretrained["questions"] and set(lines) <= {"yes", "no", "square", "circle", *"0123456"}
    assert main(["presets"]) == 0 and "pretrained:tiny" in capsys.readouterr().out


def test_an_exported_model_loads_by_its_path(tiny_sort_of_clevr, tmp_path, monkeypatch, capsys):
    """Issue 25, defect 6: `relnet export --dir DIR` wrote files that neither pretrained.load nor
    `relnet eval FILE` could load, and export without --dir wrote into the installed package."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out", str(run),
                 "--epochs", "1", "--no-progress", "--precision", "fp32"]) == 0
    shipped_before = sorted(pretrained.FOLDER.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--name", "mine", "--commit", "abc123"]) == 0
    assert sorted(pretrained.FOLDER.iterdir()) == shipped_before  # nothing written into the package
    assert (tmp_path / "mine.safetensors").is_file() and (tmp_path / "mine.json").is_file()
    model, card = pretrained.load(str(tmp_path / "mine.safetensors"))
    assert card["name"] == "mine" and not model.training
    assert card["parameters"] == sum(parameter.numel() for parameter in model.parameters())
    assert pretrained.card(str(tmp_path / "mine.json"))["commit"] == "abc123"
    capsys.readouterr()
    for spec in ("mine.safetensors", str(tmp_path / "mine.json")):
        assert main(["eval", spec, "--data", str(tiny_sort_of_clevr), "--json", "--no-progress",
                     "--precision", "fp32"]) == 0
        assert json.loads(capsys.readouterr().out)["overall"] == card["metrics"]["overall"]
    assert not list(tmp_path.glob("eval_*.json"))  # a file, not a run directory: nowhere to write metrics
    # Without --commit the card names the commit the run recorded, not the exporting checkout's.
    config = json.loads((run / "config.json").read_text())
    config["environment"]["commit"] = "feedbeef"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["export", str(run), "--name", "again"]) == 0
    assert pretrained.card(str(tmp_path / "again.json"))["commit"] == "feedbeef"
    (tmp_path / "mine.json").unlink()
    assert main(["eval", "mine.safetensors", "--data", str(tiny_sort_of_clevr), "--no-progress"]) == 2
    assert "mine.json: no such file" in capsys.readouterr().err


def test_cards_count_trainable_parameters_once():
    """Issue 25, defect 9: the sort-of-clevr-pixels card counted batch norm's running statistics
    (176,951 for 176,755 parameters) and bAbI's shared embedding twice."""
    for name in pretrained.names():
        model, card = pretrained.load(name)
        assert card["parameters"] == sum(parameter.numel() for parameter in model.parameters()), name


def test_the_shipped_models_are_small():
    files = [path for path in pretrained.FOLDER.iterdir() if path.suffix in (".safetensors", ".json")]
    assert sum(path.stat().st_size for path in files) < 10 * 2**20
    assert set(SHIPPED) | {"babi", "physics-connections", "physics-count", "clevr-state"} <= set(pretrained.names())


@pytest.fixture(scope="module")
def fresh_sort_of_clevr(tmp_path_factory):
    out = tmp_path_factory.mktemp("fresh")
    # 260 test images: 5,200 questions of the paper's two kinds (7,800 with ternary).
    write_dataset(out, train_images=1, test_images=260, seed=FRESH_SEED, progress=False)
    return out


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_accuracy_on_fresh_data(name, fresh_sort_of_clevr):
    model, card = pretrained.load(name)
    preset = Preset(**card["preset"])
    task = get_task(preset.task)
    split = task.load(fresh_sort_of_clevr, "test", preset, card["info"])
    metrics = evaluate(task, model, split, 1024, torch.device("cpu"), "fp32", progress=False)
    assert metrics["questions"] >= 5000
    for kind, target in SHIPPED[name].items():
        assert metrics["by_kind"][kind] >= target, (name, kind, metrics["by_kind"])


def test_card_describes_its_run():
    for name in pretrained.names():
        card = pretrained.card(name)
        assert {"preset", "info", "command", "data_seed", "commit", "metrics"} <= set(card)
        assert card["command"].startswith(f"relnet train --preset {card['preset']['name']}")



@pytest.mark.skipif(not SHARED_BABI.is_dir(), reason="needs the official bAbI files in ../shared/data/babi")
def test_shipped_babi_model_evaluates_official_test_files_of_the_en_layout(tmp_path, capsys):
    """`relnet eval pretrained:babi --split test` on a directory of the en/ and en-10k/ layout
    (qa{N}_{name}_test.txt); its files here are the official en-valid-10k valid files, on which the
    card's figures were measured, so the figures must agree."""
    card = pretrained.card("babi")["metrics"]
    for task, name in TASK_NAMES.items():
        (tmp_path / f"qa{task}_{name}_test.txt").write_bytes((SHARED_BABI / f"qa{task}_valid.txt").read_bytes())
    assert main(["eval", "pretrained:babi", "--data", str(tmp_path), "--split", "test", "--json", "--no-progress",
                 "--precision", "fp32"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["questions"] == sum(card["task_counts"].values())
    # The card was measured under bf16 autocast; fp32 may flip a few answers.
    assert metrics["overall"] == pytest.approx(card["overall"], abs=0.005)
    assert metrics["tasks_passed"] >= card["tasks_passed"] - 1


@pytest.mark.parametrize("name", ["physics-connections", "physics-count"])
def test_shipped_physics_model_on_fresh_scenes(tmp_path, name):
    write_physics(tmp_path, train_scenes=1, test_scenes=2000, seed=FRESH_SEED, progress=False)
    model, card = pretrained.load(name)
    preset = Preset(**card["preset"])
    task = get_task(preset.task)
    metrics = evaluate(task, model, task.load(tmp_path, "test", preset, card["info"]), 1024, torch.device("cpu"),
                       "fp32", progress=False)
    # 2,000 scenes: a standard error of about 0.6 points on the exact-match rate.
    assert metrics["overall"] >= card["metrics"]["overall"] - 0.025, (metrics["overall"], card["metrics"]["overall"])


SHARED_CLEVR = Path(__file__).resolve().parents[2] / "shared" / "data"
CLEVR_TEMPLATES = SHARED_CLEVR / "clevr-gen" / "question_generation"


def _clevr_state_cache(tmp_path, extra: list[str], scenes: Path | None = None) -> Path:
    """A state-only cache of questions from CLEVR's official templates (as the model was trained on);
    with `scenes`, questions about those scenes, which sit beside them as in a CLEVR folder."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    sources = ["--templates", str(CLEVR_TEMPLATES / "CLEVR_1.0_templates"), "--synonyms",
               str(CLEVR_TEMPLATES / "synonyms.json"), "--metadata", str(CLEVR_TEMPLATES / "metadata.json")]
    if scenes is not None:
        (data / "scenes").mkdir(parents=True)
        shutil.copy(scenes, data / "scenes" / "CLEVR_train_scenes.json")
        extra = ["--scenes", str(scenes), *extra]
    assert main(["data", "clevr-gen", "--out", str(data), "--split", "train", "--no-progress", *sources, *extra]) == 0
    assert main(["data", "clevr", "--clevr-dir", str(data), "--out", str(cache), "--no-images", "--no-progress"]) == 0
    return cache


def _clevr_state_accuracy(cache: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", "pretrained:clevr-state", "--data", str(cache), "--split", "train", "--json",
                 "--no-progress", "--precision", "fp32"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.skipif(not CLEVR_TEMPLATES.is_dir(), reason="needs CLEVR's official templates in ../shared/data/clevr-gen")
def test_shipped_clevr_state_model_on_fresh_scenes(tmp_path, capsys):
    cache = _clevr_state_cache(tmp_path, ["--images", "300", "--no-images", "--seed", str(FRESH_SEED), "--workers", "1"])
    metrics = _clevr_state_accuracy(cache, capsys)
    card = pretrained.card("clevr-state")["metrics"]
    # 3,000 questions: a standard error of under 0.5 points near the card's figure.
    assert metrics["questions"] == 3000
    assert metrics["overall"] >= card["overall"] - 0.025, (metrics["by_category"], card["by_category"])


@pytest.mark.skipif(not (CLEVR_TEMPLATES.is_dir() and (SHARED_CLEVR / "clevr-real-sample").is_dir()),
                    reason="needs CLEVR's templates and the real CLEVR sample in ../shared/data")
def test_shipped_clevr_state_model_on_real_clevr_scenes(tmp_path, capsys):
    """Questions about the 24 real CLEVR v1.0 scenes of the sample, which no model saw."""
    scenes = SHARED_CLEVR / "clevr-real-sample" / "scenes" / "CLEVR_train_scenes.json"
    cache = _clevr_state_cache(tmp_path, ["--questions-per-image", "20"], scenes=scenes)
    metrics = _clevr_state_accuracy(cache, capsys)
    assert metrics["questions"] == 480
    # Real scenes must not be harder than generated ones: the card's val figure less 8 points
    # (480 questions: a standard error of about 2 points near 71%; measured 74.4%).
    assert metrics["overall"] >= pretrained.card("clevr-state")["metrics"]["overall"] - 0.08, metrics["by_category"]
