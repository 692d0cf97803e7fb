import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relnet.cli import main
from relnet.tasks import get_preset
from relnet.train.checkpoint import load_checkpoint

COMMANDS = [[], ["data"], ["data", "sort-of-clevr"], ["data", "babi"], ["data", "physics"], ["data", "clevr-gen"],
            ["data", "clevr"], ["data", "clevr-verify"], ["data", "clevr-stats"], ["train"], ["eval"], ["predict"], ["export"], ["presets"], ["status"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "relnet")
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: relnet" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "relnet.cli", "presets"], capture_output=True, text=True, check=True)
    assert "sort-of-clevr-pixels" in result.stdout


def test_data_train_eval_end_to_end(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["data", "sort-of-clevr", "--out", str(data), "--train-images", "8", "--test-images", "4",
                 "--no-progress"]) == 0
    assert np.load(data / "train.npz")["images"].shape == (8, 75, 75, 3)
    assert main(["train", "--preset", "sort-of-clevr-cnn-mlp", "--data", str(data), "--out", str(run),
                 "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "closest_shape" in out
    assert main(["eval", str(run), "--data", str(data), "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["split"] == "test" and printed["questions"] == 4 * 20  # the paper's two question kinds
    assert json.loads((run / "eval_test.json").read_text())["overall"] == printed["overall"]
    # The same split evaluated by training and by eval agrees.
    assert json.loads((run / "metrics.json").read_text())["overall"] == pytest.approx(printed["overall"])


def test_data_refuses_to_overwrite(tmp_path, capsys):
    args = ["data", "sort-of-clevr", "--out", str(tmp_path), "--train-images", "2", "--test-images", "2", "--no-progress"]
    assert main(args) == 0
    before = (tmp_path / "train.npz").read_bytes()
    assert main(args[:-5] + ["--train-images", "3", "--test-images", "2", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "train.npz").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["train", "--preset", "no-such-preset", "--data", "D", "--out", "R"], "unknown preset 'no-such-preset'"),
    (["train", "--preset", "sort-of-clevr-state", "--data", "{missing}", "--out", "{run}"], "train.npz: no such file"),
    (["eval", "{run}", "--data", "D"], "no checkpoint"),
    (["train", "--preset", "sort-of-clevr-state", "--data", "D", "--out", "{run}", "--precision", "fp8"], "unknown precision"),
    (["train", "--preset", "sort-of-clevr-state", "--data", "D", "--out", "{run}", "--set", "lr"], "expected KEY=VALUE"),
    (["train", "--preset", "sort-of-clevr-state", "--data", "D", "--out", "{run}", "--set", "lrate=1"], "unknown key 'lrate'"),
    (["train", "--preset", "sort-of-clevr-state", "--data", "D", "--out", "{run}", "--set", "schedule=linear"],
     "unknown schedule 'linear'"),
    (["eval", "pretrained:no-such-model", "--data", "D"], "no pretrained model 'no-such-model'"),
    (["export", "{run}", "--name", "x"], "no checkpoint"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    args = [a.format(missing=tmp_path / "missing", run=tmp_path / "run") for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("relnet: error:") and message in err and "\n" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("preset, key, suggestion", [
    ("sort-of-clevr-state", "g_width", "did you mean model.g_widths?"),
    ("sort-of-clevr-pixels", "conv_ordr", "did you mean model.conv_order?"),
    ("babi", "lstm_sizes", "its options: model."),
    ("physics-connections", "g_widths_", "did you mean model.g_widths?"),
    ("clevr-state", "lstmm", "did you mean model.lstm?"),
])
def test_a_mistyped_model_option_is_named_with_the_nearest(small_datasets, tiny_sort_of_clevr, tmp_path, capsys,
                                                           preset, key, suggestion):
    """Issue 25, defect 7: the typo was reported as a problem with RUN/checkpoint.pt, a file that
    does not exist, with no suggestion."""
    from relnet.tasks import get_preset

    task = get_preset(preset).task
    data = tiny_sort_of_clevr if task == "sort-of-clevr" else small_datasets[task]
    assert main(["train", "--preset", preset, "--data", str(data), "--out", str(tmp_path / "run"),
                 "--set", f"model.{key}=[64]", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"has no option model.{key}" in err and suggestion in err and "checkpoint.pt" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_clevr_eval_of_a_shipped_model_names_where_families_are(small_datasets, tmp_path, capsys):
    """Issue 25, defect 8: the table pointed to a metrics.json that `relnet eval pretrained:...` never writes."""
    assert main(["eval", "pretrained:clevr-state", "--data", str(small_datasets["clevr"]), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "in metrics.json" not in out and "--json" in out
    assert main(["eval", "pretrained:clevr-state", "--data", str(small_datasets["clevr"]), "--no-progress",
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "eval_val.json").read_text())["by_family"]


def test_the_end_of_training_says_which_limit_ended_it(tiny_sort_of_clevr, tmp_path, capsys):
    """Issue 25, defect 10: a run whose epochs ended before --max-minutes stopped with no word why."""
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out",
                 str(tmp_path / "run"), "--epochs", "2", "--max-minutes", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "trained all 2 epochs, within the --max-minutes 2 budget; --epochs N trains longer" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["ended_by"] == "epochs" and metrics["epochs_planned"] == 2


def test_config_records_what_the_run_ran_on(tiny_sort_of_clevr, tmp_path):
    import platform

    import torch

    import relnet

    before = torch.get_num_threads()
    try:
        assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out",
                     str(tmp_path / "run"), "--epochs", "1", "--threads", "1", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(before)
    environment = json.loads((tmp_path / "run" / "config.json").read_text())["environment"]
    assert environment["threads"] == 1 and environment["torch"] == torch.__version__
    assert environment["relnet"] == relnet.__version__ and environment["python"] == platform.python_version()
    assert environment["host"] == platform.node() and environment["gpu"] is None and "cpu" in environment
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(entry["lr"] > 0 for entry in history)


def test_config_file_and_log_lines(tiny_sort_of_clevr, tmp_path, capsys):
    (tmp_path / "small.toml").write_text('lr = 3e-4\nbatch_size = 8\n[model]\ng_widths = [32, 32]\n')
    run = tmp_path / "run"
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out", str(run),
                 "--config", str(tmp_path / "small.toml"), "--set", "model.f_widths=[16]", "--epochs", "2",
                 "--no-progress"]) == 0
    preset = json.loads((run / "config.json").read_text())["preset"]
    assert preset["lr"] == 3e-4 and preset["batch_size"] == 8
    assert preset["model"]["g_widths"] == [32, 32] and preset["model"]["f_widths"] == [16]
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] == json.loads((run / "metrics.json").read_text())["steps"]
    assert all({"questions_seen", "loss", "accuracy", "lr", "train_seconds", "epoch"} <= set(row) for row in rows)
    assert [row["step"] for row in rows] == sorted(row["step"] for row in rows)
    (tmp_path / "bad.json").write_text('{"model": {"g_width": [8]}}')
    capsys.readouterr()
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out",
                 str(tmp_path / "other"), "--config", str(tmp_path / "bad.json"), "--no-progress"]) == 2
    assert "did you mean model.g_widths?" in capsys.readouterr().err
    (tmp_path / "list.json").write_text('[1, 2]')
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out",
                 str(tmp_path / "other"), "--config", str(tmp_path / "list.json"), "--no-progress"]) == 2
    assert "list.json: expected an object of preset fields" in capsys.readouterr().err


def test_set_may_repeat_but_not_change_a_run_that_is_resumed(tiny_sort_of_clevr, tmp_path, capsys):
    command = ["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out",
               str(tmp_path / "run"), "--no-progress", "--set", "lr=0.001", "--set", "model.g_widths=[8]"]
    assert main(command + ["--epochs", "1"]) == 0
    # The same command with --resume goes on (a script reruns what it started) ...
    assert main(command + ["--epochs", "2", "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_planned"] == 2
    # ... a change is refused by name, and the run is left as it was.
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main(command[:-2] + ["--set", "model.g_widths=[16]", "--set", "lr=1", "--epochs", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "would change lr (run: 0.001, given: 1" in err and "model.g_widths (run: [8], given: [16])" in err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    # A --set that names the preset's own default is compared too; another preset is named as such.
    lr = get_preset("sort-of-clevr-state").lr
    assert main(command[:-4] + ["--set", f"lr={lr}", "--epochs", "3", "--resume"]) == 2
    assert f"would change lr (run: 0.001, given: {lr}" in capsys.readouterr().err
    assert main(["train", "--preset", "sort-of-clevr-pixels", "--data", str(tiny_sort_of_clevr), "--out",
                 str(tmp_path / "run"), "--set", "lr=0.001", "--resume", "--no-progress"]) == 2
    assert "checkpoint is of preset 'sort-of-clevr-state', not 'sort-of-clevr-pixels'" in capsys.readouterr().err


def test_a_resumed_run_takes_its_evaluation_batch_from_the_command(tiny_sort_of_clevr, tmp_path):
    # The evaluation batch shapes no weight: a run started with one may go on with another.
    command = ["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out",
               str(tmp_path / "run"), "--no-progress", "--precision", "fp32", "--set", "eval_batch_size=1024"]
    assert main(command + ["--epochs", "1"]) == 0
    assert main(command[:-2] + ["--set", "eval_batch_size=7", "--epochs", "2", "--resume"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["preset"]["eval_batch_size"] == 7
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["preset"]["eval_batch_size"] == 7
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_planned"] == 2


def test_corrupt_data_file_is_named(tmp_path, capsys):
    (tmp_path / "train.npz").write_bytes(b"not a zip file")
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert str(tmp_path / "train.npz") in capsys.readouterr().err


def test_bad_arguments_exit_nonzero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "sort-of-clevr", "--out", "x", "--train-images", "0"])
    assert exit_info.value.code == 2
    assert "expected a whole number from 1 to 1,000,000, got '0'" in capsys.readouterr().err


def test_benchmark_script_smoke(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sort_of_clevr.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--smoke",
                             "--presets", "sort-of-clevr-state", "sort-of-clevr-pixels"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"sort-of-clevr-state", "sort-of-clevr-pixels"}
    assert sorted(path.name for path in tmp_path.glob("data*")) == ["data", "data-200000"]  # the pixel RN's own
    assert "binary" in result.stdout


def test_slice_minutes_ends_a_sitting_and_resume_goes_on(tiny_sort_of_clevr, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out", str(run),
              "--epochs", "2", "--no-progress"]
    assert main(common + ["--slice-minutes", "1e-9"]) == 0
    out = capsys.readouterr().out
    assert "--slice-minutes ended it after 0.20 of 2 epochs" in out  # one step of five and "`--resume` goes on" in out
    assert json.loads((run / "metrics.json").read_text())["ended_by"] == "slice"
    assert main(common + ["--resume"]) == 0
    assert "trained all 2 epochs" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["ended_by"] == "epochs"
    # Each sitting's command is recorded, and an exported model's card lists them.
    first = "relnet " + shlex.join(common + ["--slice-minutes", "1e-9"])
    sittings = [{"command": first, "from_step": 0}, {"command": "relnet " + shlex.join(common + ["--resume"]),
                                                     "from_step": 1}]
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["sittings"] == sittings and options["command"] == first
    assert main(["export", str(run), "--name", "sliced", "--dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "sliced.json").read_text())["sittings"] == sittings


def test_init_from_starts_a_new_run_from_a_trained_models_weights(tiny_sort_of_clevr, tmp_path, capsys):
    import torch

    common = ["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--no-progress",
              "--precision", "fp32", "--epochs", "1", "--set", "model.g_widths=[8]", "--set", "model.f_widths=[8]"]
    assert main(common + ["--out", str(tmp_path / "source"), "--seed", "5"]) == 0
    # At lr 1e-9 (Adam's steps are about lr each) a run keeps the weights it starts with: those of
    # --init-from, not of its seed. --resume in a directory without a checkpoint starts the run too.
    frozen = common + ["--set", "lr=1e-9"]
    assert main(frozen + ["--out", str(tmp_path / "tuned"), "--init-from", str(tmp_path / "source"), "--resume"]) == 0
    assert main(frozen + ["--out", str(tmp_path / "fresh")]) == 0
    source, tuned, fresh = (load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]
                            for name in ("source", "tuned", "fresh"))
    assert all(torch.allclose(source[key], tuned[key], rtol=0, atol=1e-6) for key in source)
    assert not all(torch.allclose(source[key], fresh[key], rtol=0, atol=1e-3) for key in source)
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["options"]["init_from"]
    assert record["source"] == str((tmp_path / "source").resolve()) and len(record["weights_sha256"]) == 64
    # The same command with --resume goes on (the source named as before, even when it is gone);
    # another source is refused, naming what the run started from.
    (tmp_path / "source").rename(tmp_path / "moved")
    assert main(frozen + ["--out", str(tmp_path / "tuned"), "--init-from", str(tmp_path / "source"), "--resume",
                          "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(frozen + ["--out", str(tmp_path / "fresh"), "--init-from", str(tmp_path / "moved"), "--resume",
                          "--epochs", "2"]) == 2
    assert "the run there started from its seed's weights" in capsys.readouterr().err
    # The card of an exported model says where its training started, and with which weights.
    assert main(["export", str(tmp_path / "tuned"), "--name", "tuned", "--dir", str(tmp_path / "models")]) == 0
    assert json.loads((tmp_path / "models" / "tuned.json").read_text())["init_from"] == record
    # A model of another shape or task is refused by name before anything is written.
    for change, expected in (([], "a model of task 'babi'; preset trains task 'sort-of-clevr'"),
                             (["--set", "model.g_widths=[16]"], "do not fit the model of preset 'sort-of-clevr-state' "
                                                                "(size mismatch for")):
        source = "pretrained:babi" if not change else str(tmp_path / "moved")
        capsys.readouterr()
        assert main(common + change + ["--out", str(tmp_path / "refused"), "--init-from", source]) == 2
        assert expected in capsys.readouterr().err
        assert not (tmp_path / "refused" / "checkpoint.pt").exists()


def test_status_says_where_a_run_stands_and_how_to_resume_it(tiny_sort_of_clevr, tmp_path, capsys, monkeypatch):
    import os

    from relnet.io import directory_lock

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    start = ["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out", "run",
             "--no-progress", "--slice-minutes", "1e-9"]
    assert main(start + ["--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["status", "run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run: sort-of-clevr-state, stopped\n  horizon: 0.20 of 2 epochs (10%); ")
    assert "  last full evaluation: epoch 0.20, 64 questions seen: test split: non_relational " in out
    # The resume command keeps the run's horizon (it leaves --epochs to the checkpoint) and its directory.
    assert f"  resume: cd {shlex.quote(str(tmp_path))} && relnet {shlex.join(start)} --resume\n" in out
    with directory_lock(run, "relnet train"):  # as a process training the run holds it
        assert main(["status", "run", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)[0]
    assert status["state"] == "training" and status["holder"] == f"pid {os.getpid()}, relnet train"
    assert main(start[:-2] + ["--resume"]) == 0
    capsys.readouterr()
    assert main(["status", "run"]) == 0
    out = capsys.readouterr().out
    assert "run: sort-of-clevr-state, finished (ended by epochs)" in out and "horizon: 2.00 of 2 epochs" in out
    assert "resume:" not in out
    # A longer horizon, stopped in its first sitting: metrics.json still speaks of the end of the old one.
    assert main(start + ["--resume", "--epochs", "4"]) == 0
    capsys.readouterr()
    assert main(["status", "run"]) == 0
    out = capsys.readouterr().out
    assert "run: sort-of-clevr-state, stopped" in out and "horizon: 2.20 of 4 epochs" in out
    assert f"&& relnet {shlex.join(start)} --resume\n" in out
    # A run ended by its time budget; a lock file that is not a lock; a directory without a run,
    # named on its own line while the others are reported.
    assert main(start[:-2] + ["--out", "budget", "--max-minutes", "1e-9"]) == 0
    (tmp_path / "budget" / ".lock").unlink()
    (tmp_path / "budget" / ".lock").mkdir()
    capsys.readouterr()
    assert main(["status", "budget", "nothing"]) == 2
    captured = capsys.readouterr()
    assert "budget: sort-of-clevr-state, finished (ended by time budget)" in captured.out
    assert "relnet: error: nothing: no run there" in captured.err
