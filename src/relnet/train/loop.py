"""The training loop shared by every benchmark.

One explicit loop: shuffle by epoch, build each batch by indexing tensors, step the
optimizer, evaluate after each epoch (and, with ``eval_every``, on a fixed subset of the
evaluation split every so many questions), checkpoint atomically. ``train`` reads top to
bottom as ``_setup`` (data, model, optimizer, resumed state), ``_train_epoch`` (which calls
``_step`` for each optimizer step), ``_evaluate_into_history`` and ``_save``.

A run lives in one directory: ``checkpoint.pt`` (full state), ``history.json``
(per-evaluation metrics), ``metrics.json`` (final), ``curves.png``, ``config.json``,
``train_log.jsonl`` (per-log training loss) and, with tensorboard installed, ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from relnet.errors import ConfigError, DataError
from relnet.io import atomic_write, directory_lock, write_json
from relnet.nn.cpu import native_bf16_cpu
from relnet.preset import EVALUATION_FIELDS, Preset
from relnet.tasks.base import Split, Task, nonempty
from relnet.train import distributed
from relnet.train.checkpoint import (StartingWeights, build_checked, load_checkpoint, other_starting_weights,
                                     save_checkpoint, weights_mismatch)
from relnet.train.events import EventLog
from relnet.train.memory import TRAINING_COPIES
from relnet.train.plots import plot_curves
from relnet.train.status import is_evaluated_at, where_in_horizon

PRECISIONS = ("auto", "fp32", "bf16")
LOG_EVERY_STEPS = 50
EVAL_SUBSET = 4000  # examples of the evaluation split read every `eval_every` examples seen
# Stock is also taken after this many seconds, so runs with slow steps (CLEVR's batch of 640 on a
# CPU takes ~20 s a step) still meet their time budget and checkpoint cadence.
LOG_EVERY_SECONDS = 30.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was requested but no CUDA GPU is available (torch.cuda.is_available() is False)")
        return torch.device("cuda")
    raise ConfigError(f"unknown device {name!r}: expected cpu, cuda or auto")


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 autocast on CUDA and on CPUs with native bf16 matrix instructions, else fp32."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}: expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" or native_bf16_cpu() else "fp32"
    return name


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def environment(device: torch.device) -> dict:
    """What a run ran on: versions, commit (when relnet runs from a git checkout), host, processor."""
    import platform

    import relnet

    cpu = next((line.split(":", 1)[1].strip() for line in _read_text("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or None)
    return {"relnet": relnet.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "commit": git_commit(), "host": platform.node(), "cpu": cpu, "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def git_commit() -> str | None:
    """The commit of the relnet checkout that is running; None when not run from a git checkout."""
    import subprocess

    import relnet

    package = Path(relnet.__file__).resolve().parent
    try:
        found = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], capture_output=True, text=True,
                               timeout=10, cwd=package).stdout.split()
    except (OSError, subprocess.TimeoutExpired):  # no git
        return None
    # A relnet installed inside another project's repository (a .venv there) is not that project's commit.
    if len(found) != 2 or Path(found[0]).resolve() / "src" / "relnet" != package:
        return None
    return found[1]


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def learning_rate(preset: Preset, step: int, total_steps: int, train_seconds: float, budget_seconds: float | None) -> float:
    """The preset's schedule at this point of the run; the run's progress is its share of the steps
    or of the time budget, whichever is further along."""
    progress = step / max(total_steps, 1)
    if budget_seconds:
        progress = max(progress, train_seconds / budget_seconds)
    if preset.schedule == "doubling":
        doublings = math.floor(progress * preset.epochs / preset.lr_double_every)
        return min(preset.lr, preset.lr_start * 2.0 ** doublings)
    warmup = min(1.0, (step + 1) / preset.warmup_steps) if preset.warmup_steps else 1.0
    if preset.schedule == "constant":
        return preset.lr * warmup
    # Held at lr for the first decay_start of the run, then a cosine over the rest.
    decay = max(0.0, min(progress, 1.0) - preset.decay_start) / (1 - preset.decay_start)
    cosine = 0.5 * (1 + math.cos(math.pi * decay))
    return preset.lr * warmup * (preset.min_lr_ratio + (1 - preset.min_lr_ratio) * cosine)


class _Stopped(Exception):
    """A stop request (Ctrl-C, SIGTERM) arrived during an evaluation."""


def evaluate(task: Task, model: torch.nn.Module, split: Split, batch_size: int,
             device: torch.device | str, precision: str = "fp32", progress: bool = True, stop=None) -> dict:
    """Metrics of ``model`` on every example of ``split`` (the last partial batch included)."""
    return task.metrics(split, predict(task, model, split, batch_size, device, precision, progress, stop))


@torch.no_grad()
def recompute_batch_norm(model: torch.nn.Module, split: Split, examples: int, batch_size: int,
                         device: torch.device | str, precision: str, seed: int) -> None:
    """Replace the running statistics of the model's batch norms by those of its current weights
    over ``examples`` examples of ``split`` drawn with ``seed``, rounded down to whole batches
    (at least one) so that every batch weighs the same, as in training. Running averages lag the
    weights by the last few dozen steps; after a large step they can cost a pixel RN tens of points
    at evaluation (docs/benchmarks.md). Only the batch norms run in training mode, so dropout,
    augmentation and the global random stream are untouched: training goes on exactly as without."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or examples <= 0:
        return
    device = torch.device(device)
    was_training, momenta = model.training, [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches below
        norm.train()
    examples = min(examples, len(split))
    examples = min(len(split), max(batch_size, examples - examples % batch_size))
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:examples].to(device)
    for batch in chosen.split(batch_size):
        inputs, _ = split.batch(batch)
        with autocast(device, precision):
            model(**inputs)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def predict(task: Task, model: torch.nn.Module, split: Split, batch_size: int,
            device: torch.device | str, precision: str = "fp32", progress: bool = True, stop=None) -> torch.Tensor:
    """The model's prediction for every example of ``split``, in the split's order (on the CPU).
    ``stop`` (a stop request, checked every batch) ends it early with _Stopped."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    order = split.eval_order().to(device)
    # Written in place: a small tensor kept per batch between the batches' large activations
    # fragments the C heap, and evaluating 40,000 Sort-of-CLEVR images held 11.8 GB.
    predictions = None
    for start in tqdm(range(0, len(split), batch_size), desc="eval", leave=False, disable=not progress):
        if stop is not None and stop.requested:
            model.train(was_training)
            raise _Stopped
        index = order[start:start + batch_size]
        inputs, _ = split.batch(index)
        with autocast(device, precision):
            batch = task.predict(model(**inputs))
        if predictions is None:
            predictions = batch.new_empty((len(split), *batch.shape[1:]))
        predictions[index] = batch
    model.train(was_training)
    return torch.empty(0, dtype=torch.long) if predictions is None else predictions.cpu()


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the run stops at a clean point."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        with contextlib.suppress(ValueError):  # signals can only be set from the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class _Progress:
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0


@dataclass
class _Run:
    """Everything a training run holds; built by ``_setup``."""

    task: Task
    preset: Preset
    world: distributed.World
    device: torch.device
    precision: str
    out_dir: Path
    options: dict
    info: dict
    train_split: Split
    eval_split: Split
    eval_subset: "Split | None"  # what the evaluations every `eval_every` questions read
    model: torch.nn.Module
    step_model: torch.nn.Module  # the model as stepped: wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    progress: _Progress
    history: list
    loss_log: list  # [questions seen, mean loss, accuracy] of the steps since the previous entry
    batch_size: int
    share: int  # examples of each step on this process
    micro_batch: int
    steps_per_epoch: int
    budget: float | None  # seconds
    eval_every_steps: int | None
    show_progress: bool
    slice_end: float | None  # time.perf_counter() at which this sitting ends (--slice-minutes)
    events: EventLog | None  # TensorBoard (rank 0)

    @property
    def epochs(self) -> int:
        return self.options["epochs"]

    @property
    def questions_seen(self) -> int:
        return self.progress.step * self.batch_size


def train(task: Task, preset: Preset, data_dir: Path | str | None, out_dir: Path, *, epochs: int | None = None,
          max_minutes: float | None = None, seed: int = 0, device: str = "auto", precision: str = "auto",
          resume: bool = False, progress: bool = True, checkpoint_minutes: float = 5.0, accumulate: int = 1,
          compile: bool = False, eval_every: int | None = None, eval_subset: int | None = None,
          command: str | None = None, slice_minutes: float | None = None,
          dist_timeout: float = distributed.JOIN_TIMEOUT, init: StartingWeights | None = None) -> dict:
    """Train ``preset`` on ``data_dir`` into the run directory ``out_dir``; returns the final metrics.
    ``data_dir`` is what ``task.load`` reads; None for a task that holds its data (a TensorTask).

    Under ``torchrun`` each process takes its share of every batch and DDP averages the gradients;
    ``accumulate`` splits each process's share into that many micro-batches. Either way a step sees
    ``preset.batch_size`` examples, so the run follows the same curve as one process would. The
    processes meet within ``dist_timeout`` seconds, or the run ends with a ConfigError. Rank 0
    alone evaluates, writes files and checkpoints. ``eval_every`` (examples seen) adds
    evaluations on a fixed subset of ``eval_subset`` examples (default 4,000; a resumed run keeps its
    own) of the evaluation split, for learning curves against examples seen. A resumed run keeps the
    preset it was started with, except for the fields that shape only its evaluations (``EVALUATION_FIELDS``), taken from ``preset``.
    ``command`` (the command line that started the run) is recorded in config.json. ``init`` starts
    a new run from a trained model's weights (fine-tuning, or a finished run trained on with a new
    schedule); a resumed run goes on from its checkpoint, and ``init`` must then name its source.

    A long run trains in slices: ``slice_minutes`` ends this call after that many minutes of wall
    time (evaluation included) with a full evaluation and a checkpoint, and ``resume=True`` goes on.
    Unlike ``max_minutes`` (the run's whole time budget, which the schedule spans) a slice leaves
    the run's horizon and schedule as they are: sliced or not, a run ends with the same weights.
    """
    wall_start = time.perf_counter()
    if slice_minutes is not None and not 0 < slice_minutes < math.inf:
        raise ConfigError(f"slice_minutes must be a positive number of minutes, got {slice_minutes}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: a file of that name exists; expected a run directory")
    # One run owns a run directory: a second `relnet train` on it is refused, not interleaved.
    owner = directory_lock(out_dir, "relnet train") if distributed.world_from_environment().is_main \
        else contextlib.nullcontext()
    with owner:
        # A Ctrl-C while the data loads stops at once (nothing is written yet); from here on it checkpoints.
        # (None: the task holds its data, as a TensorTask does; messages then name the task)
        source = Path(data_dir) if data_dir is not None else f"{task.name} (in memory)"
        run = _setup(task, preset, source, out_dir, epochs=epochs, max_minutes=max_minutes, seed=seed,
                     device=device, precision=precision, resume=resume, progress=progress, accumulate=accumulate,
                     compile=compile, eval_every=eval_every, eval_subset=eval_subset, command=command,
                     slice_end=wall_start + slice_minutes * 60 if slice_minutes else None, dist_timeout=dist_timeout,
                     init=init)
        return _train_epochs(run, checkpoint_minutes, wall_start)


def _train_epochs(run: _Run, checkpoint_minutes: float, wall_start: float) -> dict:
    run.model.train()
    try:
        with _StopRequest() as stop:
            ended_by = _budget_spent_before(run, stop)
            while not ended_by and run.progress.epoch < run.epochs:
                if run.world.any(stop.requested, run.device):  # Ctrl-C between epochs stops here too
                    _stop(run)
                ended_by = _train_epoch(run, stop, checkpoint_minutes)
                if run.progress.epoch >= run.epochs:  # its last step ended the horizon, whatever ended with it
                    ended_by = None
        return _finish(run, wall_start, ended_by or "epochs")
    finally:
        if run.events:
            run.events.close()


def _budget_spent_before(run: _Run, stop: _StopRequest) -> str | None:
    """"time budget" when a resumed run's budget was already spent: it trains no further step, and
    only evaluates if a stop came during the evaluation that ended it."""
    if not _budget_spent(run):
        return None
    if not is_evaluated_at(run.history, run.progress.step):
        _evaluate_into_history(run, subset=False, stop=stop)
        _save(run)
    return "time budget"


def _budget_spent(run: _Run) -> bool:
    """Whether the run's training time has reached its --max-minutes; rank 0's clock decides, so that
    every process stops at the same step."""
    return run.world.any(bool(run.budget) and run.world.is_main and run.progress.train_seconds >= run.budget,
                         run.device)


def _setup(task, preset, data_dir, out_dir, *, epochs, max_minutes, seed, device, precision, resume, progress,
           accumulate, compile, eval_every, eval_subset, command, slice_end, dist_timeout, init) -> _Run:
    """Validate the options, load the data and build (or restore) the model and optimizer."""
    world = distributed.world_from_environment()
    state = _checkpoint_to_resume(out_dir, preset, resume)
    init_from = _check_starting_weights(init, task, state, out_dir)
    chosen = {"seed": seed, "command": command, "epochs": epochs, "max_minutes": max_minutes,
             "eval_every": eval_every, "eval_subset": eval_subset}
    preset, chosen = _resumed_options(state, preset, chosen, out_dir, world) if state else (preset, chosen)
    epochs, eval_every = chosen["epochs"] or preset.epochs, chosen["eval_every"]
    task.check_preset(preset)  # (before its data is loaded and the processes of a torchrun world meet)
    _check_options(preset, world, epochs, chosen["max_minutes"], eval_every, accumulate)
    torch_device, run_precision = _start_device(device, precision, world, dist_timeout)
    check_same_start(world, state["progress"]["step"] if state else 0, torch_device, out_dir)
    train_split, eval_split, info, fingerprint = _load_splits(task, preset, data_dir, state, init, torch_device,
                                                              out_dir)
    model, optimizer, run_progress = _build_model(task, preset, info, torch_device, state, chosen["seed"], world,
                                                  out_dir / "checkpoint.pt", None if state else init)
    # DDP copies rank 0's weights to every process when it wraps the model.
    step_model = torch.nn.parallel.DistributedDataParallel(model) if world.launched else model
    if compile:
        step_model = torch.compile(step_model)

    options = {"seed": chosen["seed"], "epochs": epochs, "max_minutes": chosen["max_minutes"],
               "precision": run_precision, "device": str(torch_device), "data": str(data_dir), "processes": world.size,
               "backend": distributed.backend(world), "accumulate": accumulate, "compile": compile,
               "eval_every": eval_every, "eval_subset": chosen["eval_subset"] or EVAL_SUBSET,
               "command": chosen["command"], "sittings": _sittings(state, command, run_progress.step),
               "data_fingerprint": fingerprint, "train_examples": len(train_split),
               "init_from": init_from, "cwd": state["options"].get("cwd") if state else os.getcwd()}
    if world.is_main:
        _write_config(preset, options, info, torch_device, out_dir, run_progress.step)
        tqdm.write(f"{preset.name}: {len(train_split):,} training examples, device {torch_device}, "
                   f"precision {run_precision} (--precision {precision})")
        _note_if_off_plan(preset, len(train_split), epochs, data_dir)
    batch_size = min(preset.batch_size, len(train_split))
    if run_progress.batch_in_epoch > len(train_split) // batch_size:
        raise ConfigError(f"{out_dir / 'checkpoint.pt'}: damaged checkpoint: step {run_progress.batch_in_epoch} of an "
                          f"epoch of {len(train_split) // batch_size} steps")
    share = batch_size // world.size
    max_minutes = chosen["max_minutes"]
    return _Run(task=task, preset=preset, world=world, device=torch_device, precision=run_precision, out_dir=out_dir,
                options=options, info=info, train_split=train_split, eval_split=eval_split,
                eval_subset=_fixed_subset(eval_split, options["eval_subset"], torch_device) if eval_every else None,
                model=model, step_model=step_model, optimizer=optimizer, progress=run_progress,
                history=state["history"] if state else [], loss_log=state["loss_log"] if state else [],
                batch_size=batch_size, share=share, micro_batch=max(share // accumulate, 1),
                steps_per_epoch=len(train_split) // batch_size, budget=max_minutes * 60 if max_minutes else None,
                eval_every_steps=max(1, round(eval_every / batch_size)) if eval_every else None,
                show_progress=progress and world.is_main, slice_end=slice_end,
                events=EventLog(out_dir, run_progress.step * batch_size) if world.is_main else None)


def _resumed_options(state: dict, preset: Preset, given: dict, out_dir: Path,
                     world: distributed.World) -> tuple[Preset, dict]:
    """A resumed run keeps its preset (but for the fields that shape only its evaluations), seed,
    command and evaluation subset; its budgets and evaluation cadence may be given anew."""
    evaluation = {name: getattr(preset, name) for name in EVALUATION_FIELDS}
    preset = dataclasses.replace(Preset.from_dict(state["preset"], str(out_dir / "checkpoint.pt")), **evaluation)
    stored = state["options"]
    if not isinstance(stored.get("seed"), int) or not isinstance(stored.get("epochs"), int):
        raise ConfigError(f"{out_dir / 'checkpoint.pt'}: damaged checkpoint: its options lack the seed or epochs")
    kept = {"seed": stored["seed"], "command": stored.get("command"),
            "epochs": given["epochs"] or stored["epochs"],
            "max_minutes": given["max_minutes"] if given["max_minutes"] is not None else stored["max_minutes"],
            "eval_every": given["eval_every"] or stored.get("eval_every")}
    if world.is_main:
        _warn_if_horizon_moves(preset, stored, kept["epochs"], kept["max_minutes"])
    kept["eval_subset"] = _kept_eval_subset(stored, given["eval_subset"], world)
    return preset, kept


def _sittings(state: dict | None, command: str | None, step: int) -> list[dict]:
    """The command of every sitting of the run and the step it began at (a run trained in slices
    with --resume; a pretrained model's card lists them). A checkpoint written before sittings were
    recorded names only the command that started the run; a sitting that trained nothing is replaced."""
    if not state:
        return [{"command": command, "from_step": 0}]
    earlier = state["options"].get("sittings") or [{"command": state["options"].get("command"), "from_step": 0}]
    return [*[sitting for sitting in earlier if sitting["from_step"] != step], {"command": command, "from_step": step}]


def _start_device(device: str, precision: str, world: distributed.World,
                  dist_timeout: float) -> tuple[torch.device, str]:
    """The device and precision of this process; joins the torchrun world, if launched in one."""
    torch_device = resolve_device(device)
    if torch_device.type == "cuda" and world.launched:
        torch_device = torch.device("cuda", world.local_rank)
    run_precision = resolve_precision(precision, torch_device)  # refused before anything is set or joined
    if torch_device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    distributed.start(world, torch_device, dist_timeout)
    return torch_device, run_precision


def _load_splits(task, preset, data_dir, state, init, device, out_dir) -> tuple[Split, Split, dict, str]:
    """The train and evaluation splits on ``device``, the train split's info and its fingerprint. A resumed
    run keeps the vocabularies it was built with (and must find the data it started with); the
    evaluation split always uses the train split's."""
    known_info = state["info"] if state else init.info if init else None
    train_split = nonempty(task.load(data_dir, "train", preset, known_info), data_dir)
    fingerprint = train_split.fingerprint()
    if state and state["options"].get("data_fingerprint", fingerprint) != fingerprint:
        raise ConfigError(f"{out_dir / 'checkpoint.pt'}: the run was trained on other data "
                          f"({state['options'].get('train_examples')} training examples, fingerprint "
                          f"{state['options']['data_fingerprint']}); {data_dir} holds {len(train_split)} "
                          f"(fingerprint {fingerprint}): resume with the data it started with")
    train_split = train_split.to(device)
    info = train_split.info()
    eval_split = nonempty(task.load(data_dir, task.eval_split, preset, info), data_dir).to(device)
    if not eval_split.scorable():  # found now, not after an epoch of training
        raise DataError(f"{data_dir}: the {eval_split.name} split has questions without answers; training "
                        f"evaluates on it and needs every answer")
    return train_split, eval_split, info, fingerprint


def _write_config(preset: Preset, options: dict, info: dict, device: torch.device, out_dir: Path, step: int) -> None:
    """config.json (what the run is), and a train_log.jsonl that ends at the step the run starts from."""
    write_json(out_dir / "config.json", {"preset": preset.to_dict(), "options": options, "info": info,
                                         "environment": environment(device)})
    _trim_log(out_dir, step)


def _fixed_subset(eval_split: Split, size: int, device: torch.device) -> Split:
    """The same examples at every evaluation and in every run: comparable curves."""
    chosen = torch.randperm(len(eval_split), generator=torch.Generator().manual_seed(0))[:size]
    return eval_split.subset(chosen.sort().values.to(device))


def _warn_if_horizon_moves(preset: Preset, stored: dict, epochs: int, max_minutes: float | None) -> None:
    """A resume with other --epochs or --max-minutes moves the end of a decaying schedule: say so."""
    moved = [f"--{flag} {before} -> {after}" for flag, before, after in
             (("epochs", stored["epochs"], epochs), ("max-minutes", stored["max_minutes"], max_minutes))
             if before != after]
    if moved and preset.schedule != "constant":
        tqdm.write(f"note: {', '.join(moved)} moves the horizon that the {preset.schedule} schedule spans: the "
                   f"learning rate continues as that of the new horizon (--slice-minutes ends a sitting without this)")


def _note_if_off_plan(preset: Preset, train_examples: int, epochs: int, data_dir) -> None:
    """Say so when the training split is more than 10% off the size the preset's epochs are planned for."""
    planned = preset.planned_train_examples
    if planned and abs(train_examples - planned) > 0.1 * planned:
        tqdm.write(f"note: preset {preset.name} is planned for epochs of {planned:,} training examples (its "
                   f"horizon, curriculum and schedule count epochs), and {data_dir} has {train_examples:,}: this "
                   f"run trains on {epochs * train_examples:,} in all. {preset.description}")


def _where_in_horizon(run: _Run) -> str:
    """How far the run is through its epochs (and budget), and the training time left at its pace."""
    return where_in_horizon(run.progress.step, run.steps_per_epoch, run.epochs, run.progress.train_seconds,
                            run.options["max_minutes"])


def _checkpoint_to_resume(out_dir: Path, preset: Preset, resume: bool) -> dict | None:
    """The checkpoint in ``out_dir`` when resuming; an error if there is one and we are not."""
    path = out_dir / "checkpoint.pt"
    if not path.exists():
        return None
    if not resume:
        raise ConfigError(f"{out_dir}: already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out")
    state = load_checkpoint(path)
    stored = Preset.from_dict(state["preset"], str(path))
    if stored.name != preset.name:
        raise ConfigError(f"{path}: checkpoint is of preset {stored.name!r}, not {preset.name!r}")
    return state


def _kept_eval_subset(stored: dict, given: int | None, world: distributed.World) -> int | None:
    """A resumed run's evaluation subset: the one it started with (the same examples at every
    evaluation), with a note when another was asked for."""
    kept = stored.get("eval_subset")
    if not isinstance(kept, int):
        return given
    if given and given != kept and world.is_main:
        tqdm.write(f"note: this run evaluates its subset of {kept:,} examples, as it began; --eval-subset {given:,} "
                   "is not taken, so that its curve stays comparable")
    return kept


def check_same_start(world: distributed.World, step: int, device: torch.device, out_dir: Path) -> None:
    """Every process starts at rank 0's step. Each reads the checkpoint in ``out_dir`` itself, so the
    processes of machines that do not share that directory would otherwise train apart, and hang."""
    first = world.broadcast(step)
    if world.any(first != step, device):
        raise ConfigError(f"{out_dir}: the processes found different checkpoints there (rank 0 at step {first}, "
                          f"rank {world.rank} at step {step}): every machine of a torchrun world must see the "
                          "same run directory (a shared file system)")


def _check_starting_weights(init: StartingWeights | None, task, state: dict | None, out_dir: Path) -> dict | None:
    """Where the run's starting weights came from (None: its seed); a resumed run's stays as it was."""
    if state:
        problem = init and other_starting_weights(state["options"].get("init_from"), init.source, out_dir)
        if problem:
            raise ConfigError(problem)
        return state["options"].get("init_from")
    if init and init.task != task.name:
        raise ConfigError(f"--init-from {init.source}: a model of task {init.task!r}; preset "
                          f"trains task {task.name!r}")
    return init.record() if init else None


def _check_options(preset: Preset, world: distributed.World, epochs: int, max_minutes: float | None,
                   eval_every: int | None, accumulate: int) -> None:
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    if max_minutes is not None and max_minutes <= 0:
        raise ConfigError(f"--max-minutes must be positive, got {max_minutes}")
    if eval_every is not None and eval_every < 1:
        raise ConfigError(f"--eval-every must be a positive number of examples, got {eval_every}")
    if accumulate < 1 or preset.batch_size % (world.size * accumulate):
        raise ConfigError(f"the batch of {preset.batch_size} (preset {preset.name!r}) does not split into "
                          f"{world.size} process(es) x {accumulate} accumulation step(s)")


def _build_model(task, preset, info, device, state, seed, world, path, init):
    """The model and optimizer, fresh from ``seed`` (its weights from ``init`` when given) or restored
    from ``state`` (read from ``path``), and the run's progress."""
    torch.manual_seed(seed)
    # A fresh run's model comes from the preset and --set (where None), not from a checkpoint: say so when it fails.
    model = build_checked(task, preset, info, path if state else None, copies=TRAINING_COPIES, device=device).to(device)
    if init:
        try:
            model.load_state_dict(init.weights)
        except RuntimeError as error:
            raise ConfigError(f"--init-from {init.source}: its weights do not fit the model of preset "
                              f"{preset.name!r} ({weights_mismatch(error)})") from None
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    run_progress = _Progress()
    if state:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            run_progress = _Progress(**state["progress"])
            _set_random_state(_saved_random_state(state["rng"], world), device)
        except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as error:
            raise ConfigError(f"{path}: damaged checkpoint, or not of this preset's model "
                              f"({type(error).__name__}: {weights_mismatch(error)})") from None
    if world.size > 1 and not (state and _saved_random_state(state["rng"], world)):
        # Dropout masks differ between processes: each its own stream, from the seed, step and rank.
        torch.manual_seed(seed * 1_000_003 + run_progress.step * 101 + world.rank)
    return model, optimizer, run_progress


def _saved_random_state(rng: dict, world: distributed.World) -> dict | None:
    """This process's random state in a checkpoint's ``rng``; None when it was saved by another
    number of processes (each then gets a fresh stream)."""
    if world.size == 1:
        return rng
    ranks = rng.get("ranks")
    return ranks[world.rank] if isinstance(ranks, list) and len(ranks) == world.size else None


def _set_random_state(saved: dict | None, device: torch.device) -> None:
    if saved is None:
        return
    torch.set_rng_state(saved["torch"])
    if device.type == "cuda" and saved.get("cuda") is not None:
        torch.cuda.set_rng_state(saved["cuda"])


def _step(run: _Run, mine: torch.Tensor) -> torch.Tensor:
    """One optimizer step on this process's share ``mine`` of a batch; returns [loss sum, correct, examples]."""
    totals = torch.zeros(3, device=run.device)
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(run.preset, run.progress.step, run.epochs * run.steps_per_epoch,
                                    run.progress.train_seconds, run.budget)
    run.optimizer.zero_grad(set_to_none=True)
    for first in range(0, run.share, run.micro_batch):
        index = mine[first:first + run.micro_batch]
        inputs, targets = run.train_split.batch(index)
        last = first + run.micro_batch >= run.share
        # Gradients are averaged across processes once per step, on the last micro-batch.
        sync = contextlib.nullcontext() if last or not run.world.launched else run.step_model.no_sync()
        with sync:
            with autocast(run.device, run.precision):
                outputs = run.step_model(**inputs)
                loss = run.task.loss(outputs, targets)
            (loss * (len(index) / run.share)).backward()
        loss = loss.detach().float()
        # Built on the device from the loss: no host-to-device copy (and wait) on every step.
        totals += torch.stack([loss * len(index), run.task.count_correct(outputs.detach(), targets).float(),
                               torch.full_like(loss, len(index))])
    if run.preset.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.preset.grad_clip)
    run.optimizer.step()
    run.progress.step += 1
    run.progress.batch_in_epoch += 1
    return totals


def _train_epoch(run: _Run, stop: _StopRequest, checkpoint_minutes: float) -> str | None:
    """Train to the end of the current epoch (or a time limit), then evaluate and checkpoint.
    Returns the limit that ended the run before the epoch's end ("time budget" or "slice"), if one did."""
    world, progress = run.world, run.progress
    order = run.train_split.epoch_order(run.options["seed"], progress.epoch, run.batch_size).to(run.device)
    bar = tqdm(total=run.steps_per_epoch, initial=progress.batch_in_epoch, desc=f"epoch {progress.epoch + 1}/{run.epochs}",
               disable=not run.show_progress, dynamic_ncols=True)
    # Summed loss, correct answers and examples seen on this process since the epoch began.
    totals = torch.zeros(3, device=run.device)
    logged = [0.0, 0.0, 0.0]  # all processes' totals at the previous loss-log entry
    last_checkpoint = step_start = time.perf_counter()
    ended_by, stop_requested = None, False
    while progress.batch_in_epoch < run.steps_per_epoch:
        start = progress.batch_in_epoch * run.batch_size + world.rank * run.share
        totals += _step(run, order[start:start + run.share])
        bar.update(1)
        # One collective a step agrees on rank 0's clock (a log due, the slice over) and on a stop request (Ctrl-C).
        now = time.perf_counter()
        clock_due, slice_over, stop_requested = world.any_each(
            [world.is_main and now - step_start >= LOG_EVERY_SECONDS,
             world.is_main and run.slice_end is not None and now >= run.slice_end, stop.requested], run.device)
        eval_due = bool(run.eval_every_steps) and progress.step % run.eval_every_steps == 0
        # A stop logs first, so that the checkpoint's loss log and time cover every step taken.
        if (progress.step % LOG_EVERY_STEPS == 0 or progress.batch_in_epoch == run.steps_per_epoch or clock_due
                or eval_due or slice_over or stop_requested):
            summed = world.sum(totals).tolist()  # synchronizes: the time is real
            now = time.perf_counter()
            progress.train_seconds += now - step_start
            step_start = now
            _log_steps(run, summed, logged, bar)
            logged = summed
            if eval_due and progress.batch_in_epoch < run.steps_per_epoch:
                _evaluate_into_history(run, subset=True, stop=stop)
                step_start = time.perf_counter()  # evaluation time is not training time
            ended_by = _limit_reached(run, slice_over)
            if ended_by:
                break
            if world.any(world.is_main and now - last_checkpoint >= checkpoint_minutes * 60, run.device):
                _save(run)
                last_checkpoint = step_start = time.perf_counter()
        if stop_requested:
            break
    bar.close()
    if stop_requested:
        _stop(run)
    # The epoch counts as done once evaluated: a stop during its evaluation resumes with that
    # evaluation (the steps all taken), never past it.
    _evaluate_into_history(run, subset=False, stop=stop)
    if progress.batch_in_epoch >= run.steps_per_epoch:
        progress.epoch += 1
        progress.batch_in_epoch = 0
    _save(run)
    return ended_by


def _log_steps(run: _Run, summed: list, logged: list, bar) -> None:
    """Log the steps since the previous entry (the loss log, train_log.jsonl and the bar) from all
    processes' totals ``summed`` and those at the previous entry ``logged``."""
    loss_sum, correct, seen = (total - before for total, before in zip(summed, logged))
    if seen:
        lr = run.optimizer.param_groups[0]["lr"]
        run.loss_log.append([run.questions_seen, loss_sum / seen, correct / seen])
        if run.world.is_main:
            progress = run.progress
            _append_to_log(run, {"questions_seen": run.questions_seen, "step": progress.step,
                                 "epoch": progress.epoch + progress.batch_in_epoch / run.steps_per_epoch,
                                 "train_seconds": round(progress.train_seconds, 3), "loss": loss_sum / seen,
                                 "accuracy": correct / seen, "lr": lr})
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", lr=f"{lr:.2e}")


def _limit_reached(run: _Run, slice_over: bool) -> str | None:
    """The time limit that ends the run here ("time budget", or "slice": this sitting's), if one does."""
    budget_spent = _budget_spent(run)
    if not (budget_spent or slice_over):
        return None
    if run.world.is_main:
        tqdm.write(f"time budget of {run.options['max_minutes']:g} min reached at step {run.progress.step}"
                   if budget_spent else f"this slice's time is up at step {run.progress.step}")
    return "time budget" if budget_spent else "slice"


LOG = "train_log.jsonl"


def _append_to_log(run: _Run, row: dict) -> None:
    """One line of train_log.jsonl (what a logger or pandas.read_json(lines=True) reads): the
    steps since the previous line, as the progress bar shows them."""
    with open(run.out_dir / LOG, "a") as log:
        log.write(json.dumps(row) + "\n")
    run.events.train(row)


def _trim_log(out_dir: Path, step: int) -> None:
    """Drop the lines of steps after the checkpoint a run resumes from (they are trained again)."""
    path = out_dir / LOG
    if path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True)
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write(path, lambda file: file.write("".join(kept).encode()))


def _stop(run: _Run):
    """Checkpoint and end the run at a clean point (Ctrl-C or SIGTERM)."""
    _save(run)
    run.world.barrier()
    distributed.stop(run.world)
    raise KeyboardInterrupt(f"stopped at step {run.progress.step}; continue with --resume")


def _epoch_so_far(run: _Run) -> tuple[float, float, int]:
    """(loss sum, correct, examples) of the current epoch's steps, from the loss log, which the
    checkpoint keeps: a resumed epoch counts the steps taken before the stop too."""
    start = (run.progress.epoch * run.steps_per_epoch) * run.batch_size
    loss_sum = correct = seen = 0.0
    previous = start
    for questions, loss, accuracy in run.loss_log:
        if questions > start:
            count = questions - previous
            loss_sum, correct, seen = loss_sum + loss * count, correct + accuracy * count, seen + count
        previous = max(previous, questions)
    return loss_sum, correct, int(seen)


def _evaluate_into_history(run: _Run, subset: bool, stop: _StopRequest) -> None:
    """Evaluate on rank 0 (the whole evaluation split, or the fixed subset), append to the
    history on every process, and write history.json and curves.png. A stop request during the
    evaluation ends the run at once (the checkpoint keeps the training done)."""
    loss_sum, correct, seen = _epoch_so_far(run)
    entry = None
    if run.world.is_main:
        recompute_batch_norm(run.model, run.train_split, run.preset.batch_norm_examples, run.micro_batch, run.device,
                             run.precision, run.options["seed"] * 1_000_003 + run.progress.step)
        split = run.eval_subset if subset else run.eval_split
        try:
            # One process alone can stop mid-evaluation; with several, the others wait in a collective.
            metrics = evaluate(run.task, run.model, split, run.preset.eval_batch_size, run.device, run.precision,
                               run.show_progress, stop=stop if run.world.size == 1 else None)
        except _Stopped:
            _stop(run)
        entry = {"epoch": run.progress.epoch + run.progress.batch_in_epoch / run.steps_per_epoch,
                 "step": run.progress.step, "questions_seen": run.questions_seen,
                 "train_seconds": run.progress.train_seconds,
                 # None when the epoch logged no step
                 "train_loss": loss_sum / seen if seen else None, "train_accuracy": correct / seen if seen else None,
                 "lr": run.optimizer.param_groups[0]["lr"], "subset": subset, "eval_examples": len(split),
                 "eval": metrics}
    run.history.append(run.world.broadcast(entry))
    if run.world.is_main:
        write_json(run.out_dir / "history.json", run.history)
        run.events.evaluation(entry)
        if not subset:  # drawing takes a good fraction of a second: only at full evaluations
            plot_curves(run.history, run.loss_log, run.out_dir / "curves.png", run.task.curve_group,
                        title=run.preset.name)
        training = f"train loss {entry['train_loss']:.4f}  train acc {entry['train_accuracy']:.4f}  " if seen else ""
        tqdm.write(f"epoch {entry['epoch']:.2f}  {entry['questions_seen']:,} seen  {training}{split.name} acc "
                   f"{metrics['overall']:.4f}" + (f" ({len(split):,} examples)" if subset else ""))
        if not subset:
            tqdm.write(_where_in_horizon(run))


def _random_state(device: torch.device) -> dict:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}


def _save(run: _Run) -> None:
    """Checkpoint the full training state, atomically: rank 0 writes it, with every process's
    random state (so a collective: every process saves at the same step)."""
    ranks = run.world.gather(_random_state(run.device))
    if not run.world.is_main:
        return
    rng = {**ranks[0], "ranks": ranks} if run.world.size > 1 else ranks[0]
    save_checkpoint(run.out_dir / "checkpoint.pt", {
        "preset": run.preset.to_dict(), "info": run.info, "options": run.options, "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "progress": vars(run.progress).copy(), "rng": rng,
        "history": run.history, "loss_log": run.loss_log})


def _finish(run: _Run, wall_start: float, ended_by: str) -> dict:
    """The final metrics (the last full evaluation), written to metrics.json."""
    # Every epoch, and every run stopped by its budget, ends with a full evaluation.
    last = next((entry for entry in reversed(run.history) if not entry.get("subset")), None)
    if last is None:
        raise ConfigError(f"{run.out_dir / 'checkpoint.pt'}: the run holds no full evaluation to report")
    seconds = run.progress.train_seconds
    final = {**last["eval"], "preset": run.preset.name, "epochs": last["epoch"], "steps": run.progress.step,
             "questions_seen": run.questions_seen, "train_seconds": round(seconds, 1),
             "wall_seconds_this_session": round(time.perf_counter() - wall_start, 1),
             "train_samples_per_second": round(run.questions_seen / seconds, 1) if seconds else None,
             "precision": run.precision, "device": str(run.device), "processes": run.world.size,
             "parameters": sum(p.numel() for p in run.model.parameters()),
             "ended_by": ended_by, "epochs_planned": run.epochs, "max_minutes": run.options["max_minutes"]}
    if run.world.is_main:
        write_json(run.out_dir / "metrics.json", final)
    run.world.barrier()
    distributed.stop(run.world)
    return final
