import dataclasses
import itertools
import json
import os
import platform
import signal
import time

import pytest
import torch

from relnet.errors import ConfigError
from relnet.tasks import get_preset, get_task
from relnet.train import train
from relnet.train.loop import learning_rate


def small(name, **overrides):
    preset = get_preset(name)
    model = {**preset.model, **overrides.pop("model", {})}
    return dataclasses.replace(preset, model=model, **overrides)


def run(preset, data, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("precision", "fp32")  # exact comparisons below; auto may pick bf16 on this CPU
    return train(get_task(preset.task), preset, data, out, **kwargs)


def test_learning_rate_warms_up_then_decays():
    preset = small("sort-of-clevr-state", lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    rates = [learning_rate(preset, step, 100, 0.0, None) for step in range(100)]
    assert rates[0] == pytest.approx(0.1 * (0.1 + 0.9 * 1.0), rel=0.01)
    assert max(rates) == pytest.approx(rates[9], rel=0.01)
    assert rates[99] == pytest.approx(0.1, abs=0.01)
    # A time budget ends the schedule when the time is spent, even if steps remain.
    assert learning_rate(preset, 50, 100, 60.0, 60.0) == pytest.approx(0.1)


def test_time_budget_is_checked_between_slow_steps(tiny_sort_of_clevr, tmp_path, monkeypatch):
    # With stock taken after every step's worth of seconds, a tiny budget stops the run long
    # before the 50-step logging cadence, as it must when each step takes many seconds.
    monkeypatch.setattr("relnet.train.loop.LOG_EVERY_SECONDS", 0.0)
    preset = small("sort-of-clevr-state", epochs=5, batch_size=2)
    metrics = run(preset, tiny_sort_of_clevr, tmp_path / "run", max_minutes=1e-9)
    assert metrics["steps"] == 1 and metrics["ended_by"] == "time budget"


def test_a_run_its_budget_ended_trains_no_further_when_resumed(tiny_sort_of_clevr, tmp_path, monkeypatch):
    """Rerunning a budgeted run's command with --resume (as a script of slices does) takes no step:
    the budget is spent before the first one. Stopped during the evaluation that ended it, it
    evaluates, still without a step, and `relnet status` calls it stopped until then."""
    import relnet.train.loop as loop
    from relnet.train.status import run_status

    monkeypatch.setattr("relnet.train.loop.LOG_EVERY_SECONDS", 0.0)
    preset = small("sort-of-clevr-state", epochs=5, batch_size=2)
    out = tmp_path / "run"
    run(preset, tiny_sort_of_clevr, out, max_minutes=1e-9)
    checkpoint = (out / "checkpoint.pt").read_bytes()
    again = run(preset, tiny_sort_of_clevr, out, max_minutes=1e-9, resume=True)
    assert again["steps"] == 1 and again["ended_by"] == "time budget"
    assert (out / "checkpoint.pt").read_bytes() == checkpoint

    evaluate = loop.evaluate

    def interrupted_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", interrupted_evaluation)
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        run(preset, tiny_sort_of_clevr, tmp_path / "stopped", max_minutes=1e-9)
    status = run_status(tmp_path / "stopped")
    assert status["state"] == "stopped" and status["last_full_evaluation"] is None
    monkeypatch.setattr(loop, "evaluate", evaluate)
    resumed = run(preset, tiny_sort_of_clevr, tmp_path / "stopped", max_minutes=1e-9, resume=True)
    assert resumed["steps"] == 1 and resumed["ended_by"] == "time budget"
    assert run_status(tmp_path / "stopped")["state"] == "finished"


def test_a_slice_that_ends_on_the_last_step_ends_the_run_by_its_epochs(tiny_sort_of_clevr, tmp_path):
    preset = small("sort-of-clevr-state", epochs=1, batch_size=10**6)  # one step: the whole train split
    metrics = run(preset, tiny_sort_of_clevr, tmp_path / "run", slice_minutes=1e-9)  # over after any step
    assert metrics["steps"] == 1 and metrics["ended_by"] == "epochs"


def test_run_directory_contents(tiny_sort_of_clevr, tmp_path):
    out = tmp_path / "run"
    metrics = run(small("sort-of-clevr-state", epochs=2), tiny_sort_of_clevr, out)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["questions"] == 6 * 30
    assert set(saved["by_kind"]) == {"non_relational", "binary", "ternary"}
    assert len(saved["by_subtype"]) == 9
    assert all(0 <= value <= 1 for value in [saved["overall"], *saved["by_kind"].values(), *saved["by_subtype"].values()])
    assert saved["overall"] == metrics["overall"]
    assert len(json.loads((out / "history.json").read_text())) == 2
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "progress", "rng", "preset", "info"} <= set(state)
    assert not [path for path in out.iterdir() if path.name.endswith(".tmp")]


def test_interrupted_run_resumes_to_the_same_weights(tiny_sort_of_clevr, tmp_path, monkeypatch):
    preset = small("sort-of-clevr-pixels", epochs=2, batch_size=16, model={"g_widths": [32, 32], "f_widths": [32]})
    run(preset, tiny_sort_of_clevr, tmp_path / "straight")

    task = get_task(preset.task)
    original_loss = type(task).loss
    calls = {"n": 0}

    def loss_then_interrupt(self, outputs, targets):
        calls["n"] += 1
        if calls["n"] == 30:  # in the second epoch: Ctrl-C arrives mid-run
            os.kill(os.getpid(), signal.SIGINT)
        return original_loss(self, outputs, targets)

    monkeypatch.setattr(type(task), "loss", loss_then_interrupt)
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        run(preset, tiny_sort_of_clevr, tmp_path / "interrupted")
    monkeypatch.setattr(type(task), "loss", original_loss)
    interrupted = torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)
    assert interrupted["progress"]["step"] == 30
    # A line of a step the checkpoint did not keep (as a kill between a log line and the next
    # checkpoint leaves) is dropped when the run resumes: those steps are trained again.
    with open(tmp_path / "interrupted" / "train_log.jsonl", "a") as log:
        log.write(json.dumps({"step": 31, "loss": 9.0}) + "\n")

    run(preset, tiny_sort_of_clevr, tmp_path / "interrupted", resume=True)
    lines = (tmp_path / "interrupted" / "train_log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == sorted(set(steps)) and 30 in steps and all("loss" in json.loads(line) for line in lines)
    assert all(json.loads(line)["loss"] != 9.0 for line in lines)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)
    assert steps[-1] == resumed["progress"]["step"]
    # The resumed epoch's training loss covers the steps before the stop too: the same as straight.
    for before, after in zip(straight["history"], resumed["history"]):
        assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-6)
    assert resumed["progress"] == straight["progress"] | {"train_seconds": resumed["progress"]["train_seconds"]}
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0, msg=name)


def test_existing_run_is_not_overwritten(tiny_sort_of_clevr, tmp_path):
    out = tmp_path / "run"
    run(small("sort-of-clevr-state", epochs=1), tiny_sort_of_clevr, out)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        run(small("sort-of-clevr-state", epochs=1), tiny_sort_of_clevr, out)
    with pytest.raises(ConfigError, match="sort-of-clevr-state"):
        run(small("sort-of-clevr-cnn-mlp", epochs=1), tiny_sort_of_clevr, out, resume=True)
    assert (out / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("device, message", [("tpu", "unknown device"),
                                             pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(
                                                 torch.cuda.is_available(), reason="a GPU is present"))])
def test_bad_device(tiny_sort_of_clevr, tmp_path, device, message):
    with pytest.raises(ConfigError, match=message):
        run(small("sort-of-clevr-state"), tiny_sort_of_clevr, tmp_path / "run", device=device)
    assert not (tmp_path / "run").exists()


def test_accumulated_micro_batches_follow_the_same_curve(tiny_sort_of_clevr, tmp_path):
    preset = get_preset("sort-of-clevr-state")
    whole = run(preset, tiny_sort_of_clevr, tmp_path / "whole", epochs=3)
    parts = run(preset, tiny_sort_of_clevr, tmp_path / "parts", epochs=3, accumulate=4)
    curve = lambda out: [row[1] for row in torch.load(out / "checkpoint.pt", weights_only=True)["loss_log"]]
    assert curve(tmp_path / "parts") == pytest.approx(curve(tmp_path / "whole"), rel=1e-5)
    assert parts["overall"] == whole["overall"]
    with pytest.raises(ConfigError, match="does not split into 1 process"):
        run(preset, tiny_sort_of_clevr, tmp_path / "bad", accumulate=5)


def torchrun(processes, preset, data, out, *flags, epochs=3):
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             str(processes), "-m", "relnet.cli", "train", "--preset", preset.name, "--data", str(data),
                             "--out", str(out), "--epochs", str(epochs), "--no-progress", "--precision", "fp32", *flags],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.parametrize("processes", [1, 2])
def test_torchrun_matches_a_plain_run(tiny_sort_of_clevr, tmp_path, processes):
    """gloo on CPU: each process takes its share of every batch; the loss curve is the plain run's.
    One process launched by torchrun still joins a process group (the path NCCL takes on a GPU)."""
    preset = get_preset("sort-of-clevr-state")  # no batch norm, no dropout: the curves can agree exactly
    run(preset, tiny_sort_of_clevr, tmp_path / "one", epochs=3)
    result = torchrun(processes, preset, tiny_sort_of_clevr, tmp_path / "two")
    assert result.stdout.count("overall") == 1  # rank 0 alone reports
    one, two = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("one", "two"))
    assert [row[1] for row in two["loss_log"]] == pytest.approx([row[1] for row in one["loss_log"]], rel=1e-5)
    options = json.loads((tmp_path / "two" / "config.json").read_text())["options"]
    assert options["processes"] == processes and options["backend"] == "gloo"
    assert json.loads((tmp_path / "one" / "config.json").read_text())["options"]["backend"] is None
    for name, weights in one["model"].items():
        torch.testing.assert_close(two["model"][name], weights, rtol=1e-4, atol=1e-6)


def test_a_torchrun_run_resumed_keeps_each_process_random_stream(tiny_sort_of_clevr, tmp_path):
    """Two processes with dropout: each saves its own random state in the checkpoint, so a run
    resumed after each epoch ends with the weights of the run in one piece, bit for bit. (A
    constant rate: a longer --epochs on resume then changes no step's rate.)"""
    preset = get_preset("sort-of-clevr-state")
    flags = ["--set", "model.dropout=0.5", "--set", "schedule=constant"]
    torchrun(2, preset, tiny_sort_of_clevr, tmp_path / "whole", *flags, epochs=3)
    torchrun(2, preset, tiny_sort_of_clevr, tmp_path / "parts", *flags, epochs=1)
    for epochs in (2, 3):
        torchrun(2, preset, tiny_sort_of_clevr, tmp_path / "parts", *flags, "--resume", epochs=epochs)
    whole, parts = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("whole", "parts"))
    assert parts["progress"] == whole["progress"] | {"train_seconds": parts["progress"]["train_seconds"]}
    for name, weights in whole["model"].items():
        assert torch.equal(parts["model"][name], weights), name
    assert len(whole["rng"]["ranks"]) == 2 and not torch.equal(*(rank["torch"] for rank in whole["rng"]["ranks"]))


def test_tensorboard_events_follow_the_logs_and_drop_what_a_resume_trains_again(tiny_sort_of_clevr, tmp_path):
    pytest.importorskip("tensorboard")  # in the test extra; optional for users
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    preset = small("sort-of-clevr-state", epochs=1, batch_size=8)
    out = tmp_path / "run"
    run(preset, tiny_sort_of_clevr, out, eval_every=40)
    # What a run killed after its checkpoint leaves: an event of a step that is trained again.
    with SummaryWriter(str(out / "tensorboard")) as stray:
        stray.add_scalar("train/loss", 9.0, 10**6)
    run(preset, tiny_sort_of_clevr, out, resume=True, epochs=2)
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [row["questions_seen"] for row in rows]
    assert [event.value for event in losses] == pytest.approx([row["loss"] for row in rows], rel=1e-6)
    history = json.loads((out / "history.json").read_text())
    full, subset = [[entry for entry in history if entry["subset"] == kind] for kind in (False, True)]
    assert len(full) == 2 and subset
    assert [event.value for event in events.Scalars("eval/overall")] == pytest.approx(
        [entry["eval"]["overall"] for entry in full], rel=1e-6)
    assert len(events.Scalars("eval_subset/overall")) == len(subset)
    assert {"eval/by_kind/binary", "eval/by_subtype/binary/closest_shape", "train/lr"} <= set(events.Tags()["scalars"])


def test_a_run_on_a_split_of_another_size_than_planned_is_told_so(tiny_sort_of_clevr, tmp_path, capsys):
    examples = len(get_task("sort-of-clevr").load(tiny_sort_of_clevr, "train", get_preset("sort-of-clevr-state")))
    run(small("sort-of-clevr-state", epochs=1, planned_train_examples=examples * 20), tiny_sort_of_clevr, tmp_path / "a")
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert note == [f"note: preset sort-of-clevr-state is planned for epochs of {examples * 20:,} training examples "
                    f"(its horizon, curriculum and schedule count epochs), and {tiny_sort_of_clevr} has {examples:,}: "
                    f"this run trains on {examples:,} in all. {get_preset('sort-of-clevr-state').description}"]
    for planned in (0, examples, round(examples * 1.05)):  # unplanned, as planned, within 10% of it
        run(small("sort-of-clevr-state", epochs=1, planned_train_examples=planned), tiny_sort_of_clevr,
            tmp_path / f"b{planned}")
        assert "note: " not in capsys.readouterr().out


def test_without_tensorboard_a_run_writes_no_event_folder(tiny_sort_of_clevr, tmp_path, monkeypatch):
    monkeypatch.setattr("relnet.train.events._writer_class", lambda: None)  # as if not installed
    run(small("sort-of-clevr-state", epochs=1), tiny_sort_of_clevr, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run" / "tensorboard").exists()


def test_a_run_in_three_slices_ends_as_the_run_in_one_piece(tiny_sort_of_clevr, tmp_path, monkeypatch, capsys):
    """Issue 26: a long run trains in sittings ended by --slice-minutes; its decaying schedule is
    set by the whole horizon, so the slices end on the weights of the run trained in one piece."""
    preset = small("sort-of-clevr-pixels", epochs=4, batch_size=8, schedule="cosine", warmup_steps=5,
                   model={"g_widths": [32, 32], "f_widths": [32]})
    run(preset, tiny_sort_of_clevr, tmp_path / "whole")
    clock = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))  # a second per reading: no timing noise
    ends = []
    for minutes in (0.3, 0.9, 0.5, None):  # three slices of different lengths, then the rest of the run
        metrics = run(preset, tiny_sort_of_clevr, tmp_path / "sliced", resume=True, slice_minutes=minutes)
        ends.append((metrics["ended_by"], metrics["steps"]))
    assert [ended_by for ended_by, _ in ends] == ["slice"] * 3 + ["epochs"]
    lengths = [after - before for (_, before), (_, after) in zip([(None, 0)] + ends, ends)]
    assert all(lengths) and len(set(lengths[:3])) == 3, lengths
    assert "horizon: " in capsys.readouterr().out
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    sliced = torch.load(tmp_path / "sliced" / "checkpoint.pt", weights_only=True)
    for name, tensor in whole["model"].items():
        torch.testing.assert_close(sliced["model"][name], tensor, rtol=0, atol=0, msg=name)
    for before, after in zip(whole["optimizer"]["state"].values(), sliced["optimizer"]["state"].values()):
        for key in before:
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert sliced["progress"] | {"train_seconds": 0} == whole["progress"] | {"train_seconds": 0}
    at_epoch_ends = [entry["eval"] for entry in sliced["history"] if not entry["subset"] and entry["epoch"] % 1 == 0]
    assert at_epoch_ends == [entry["eval"] for entry in whole["history"]]


def test_recomputed_batch_norm_statistics_are_those_of_the_current_weights(tiny_sort_of_clevr):
    from relnet.train.loop import recompute_batch_norm

    preset = small("sort-of-clevr-pixels", model={"g_widths": [8], "f_widths": [8], "dropout": 0.5})
    task = get_task(preset.task)
    split = task.load(tiny_sort_of_clevr, "train", preset)
    torch.manual_seed(0)
    model = task.build_model(preset, split.info())
    first = model.encoder.convs[2]  # conv -> ReLU -> batch norm: the first norm reads ReLU maps of the images
    first.running_mean.fill_(5.0)
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(7))[:40]
    with torch.no_grad():
        maps = torch.cat([model.encoder.convs[:2](split.batch(part)[0]["images"].permute(0, 3, 1, 2).float() / 255)
                          for part in chosen.split(16)])
    batch_means = torch.stack([part.mean((0, 2, 3)) for part in maps.split(16)])
    rng = torch.get_rng_state()
    recompute_batch_norm(model, split, 40, 16, "cpu", "fp32", seed=7)
    # The mean of the batch means over whole batches: 40 examples in batches of 16 are two batches.
    torch.testing.assert_close(first.running_mean, batch_means[:2].mean(0), rtol=1e-3, atol=1e-4)
    assert torch.equal(torch.get_rng_state(), rng) and model.training  # dropout drew nothing; the mode is kept
    assert first.momentum == 0.1
    recompute_batch_norm(model, split, 5, 16, "cpu", "fp32", seed=7)  # fewer than a batch: one batch
    torch.testing.assert_close(first.running_mean, batch_means[0], rtol=1e-3, atol=1e-4)


def test_batch_norm_recomputed_before_evaluations_leaves_training_as_it_was(tiny_sort_of_clevr, tmp_path):
    preset = small("sort-of-clevr-pixels", model={"g_widths": [8], "f_widths": [8]})
    assert preset.batch_norm_examples > 0  # the default
    plain = run(dataclasses.replace(preset, batch_norm_examples=0), tiny_sort_of_clevr, tmp_path / "plain", epochs=2)
    recomputed = run(preset, tiny_sort_of_clevr, tmp_path / "bn", epochs=2)
    weights = {out: torch.load(tmp_path / out / "checkpoint.pt", weights_only=True)["model"] for out in ("plain", "bn")}
    for name, tensor in weights["plain"].items():
        same = torch.equal(tensor, weights["bn"][name])
        assert same == (not name.endswith(("running_mean", "running_var", "num_batches_tracked"))), name
    assert recomputed["questions_seen"] == plain["questions_seen"]
    with pytest.raises(ConfigError, match="batch_norm_examples"):
        get_preset("sort-of-clevr-pixels").with_overrides(["batch_norm_examples=-1"])


def test_predictions_are_in_the_split_order_whatever_order_evaluation_visits(tiny_sort_of_clevr, monkeypatch):
    from relnet.train.loop import predict

    preset = small("sort-of-clevr-state")
    task = get_task(preset.task)
    split = task.load(tiny_sort_of_clevr, "test", preset)
    torch.manual_seed(0)
    model = task.build_model(preset, split.info()).eval()
    with torch.no_grad():
        expected = task.predict(model(**split.batch(torch.arange(len(split)))[0]))
    assert len(expected.unique()) > 1  # an untrained model that answers one thing would hide a shuffle
    visits = torch.randperm(len(split), generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(split, "eval_order", lambda: visits)
    assert torch.equal(predict(task, model, split, 7, "cpu", progress=False), expected)  # 7: a last partial batch
    empty = split.subset(torch.arange(0))
    assert predict(task, model, empty, 7, "cpu", progress=False).shape == (0,)


FREED_BLOCKS = """
import resource, sys, torch
from relnet.train.memory import keep_freed_memory
print(keep_freed_memory())
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(1_000_000) for _ in range(8)]  # 32 MB in 4 MB blocks, freed together
    del blocks
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_freed_blocks_stay_with_the_process_for_the_next_step():
    import subprocess
    import sys

    def faults(**env):
        clean = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
        lines = subprocess.run([sys.executable, "-c", FREED_BLOCKS], env={**clean, **env}, capture_output=True,
                               text=True, check=True).stdout.split()
        return lines[0], [int(count) for count in lines[1:]]

    applied, kept = faults()
    assert applied == "True" and max(kept[-3:]) < 100  # reused after a warm-up: no page faulted in again
    # A user's own MALLOC_* setting wins: with glibc's default trim threshold fixed, the blocks go
    # back to the kernel and their 7,800 pages are faulted in again each time.
    applied, returned = faults(MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False" and min(returned[-3:]) > 4000


def test_the_commit_recorded_is_relnets_own(tmp_path, monkeypatch):
    """A relnet installed inside another project's git repository (its .venv) records no commit,
    not that project's."""
    import subprocess
    from pathlib import Path

    import relnet
    from relnet.train.loop import git_commit

    checkout = Path(relnet.__file__).resolve().parents[2]
    if (checkout / ".git").exists():
        assert len(git_commit()) == 40
    other = tmp_path / "project"
    package = other / ".venv" / "lib" / "relnet"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q",
                    "--allow-empty", "-m", "theirs"], check=True)
    monkeypatch.setattr(relnet, "__file__", str(package / "__init__.py"))
    assert git_commit() is None


def test_processes_that_find_different_checkpoints_are_stopped(tmp_path):
    """Under torchrun each process reads the run directory itself: on machines that do not share it,
    a resume would start the ranks at different steps and hang in a later collective."""
    from relnet.train.distributed import World
    from relnet.train.loop import check_same_start

    class RankOneOfTwo(World):  # rank 0 resumed at step 7: what the collectives would tell rank 1
        def broadcast(self, value):
            return 7

        def any(self, flag, device):
            return flag

    world = RankOneOfTwo(rank=1, size=2, launched=True)
    check_same_start(world, 7, torch.device("cpu"), tmp_path)
    with pytest.raises(ConfigError, match=r"rank 0 at step 7, rank 1 at step 0\): every machine of a torchrun world"):
        check_same_start(world, 0, torch.device("cpu"), tmp_path)


def test_sittings_name_each_command_once_and_read_older_checkpoints():
    from relnet.train.loop import _sittings

    first = _sittings(None, "relnet train A", 0)
    assert first == [{"command": "relnet train A", "from_step": 0}]
    second = _sittings({"options": {"command": "relnet train A", "sittings": first}}, "relnet train A --resume", 7)
    assert [sitting["from_step"] for sitting in second] == [0, 7]
    # A sitting that trained nothing (stopped before its first step) is replaced by the next.
    assert _sittings({"options": {"sittings": second}}, "again", 7)[-1] == {"command": "again", "from_step": 7}
    assert len(_sittings({"options": {"sittings": second}}, "again", 7)) == 2
    # A checkpoint from before sittings were recorded: the command that started the run, then this one.
    assert _sittings({"options": {"command": "relnet train A"}}, "B", 9) == [
        {"command": "relnet train A", "from_step": 0}, {"command": "B", "from_step": 9}]
