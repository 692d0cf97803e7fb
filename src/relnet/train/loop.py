"""The training loop shared by every benchmark.

One explicit loop: shuffle by epoch, build each batch by indexing tensors, step the
optimizer, evaluate after each epoch, checkpoint atomically. A run lives in one
directory: ``checkpoint.pt`` (full state), ``history.json`` (per-evaluation
metrics), ``metrics.json`` (final), ``curves.png``, ``config.json``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from relnet.errors import ConfigError
from relnet.io import write_json
from relnet.train import distributed
from relnet.train.checkpoint import load_checkpoint, save_checkpoint
from relnet.train.plots import plot_curves
from relnet.train.preset import Preset

if TYPE_CHECKING:
    from relnet.tasks.base import Split, Task

PRECISIONS = ("auto", "fp32", "bf16")
LOG_EVERY_STEPS = 50
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
    """'auto' is bf16 on CUDA and fp32 on CPU: CPUs without native bf16 matmul run bf16 slower."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}: expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return preset.lr * warmup * (preset.min_lr_ratio + (1 - preset.min_lr_ratio) * cosine)


@torch.no_grad()
def evaluate(task: "Task", model: torch.nn.Module, split: "Split", batch_size: int,
             device: torch.device, precision: str = "fp32", progress: bool = True) -> dict:
    """Metrics of ``model`` on every example of ``split`` (the last partial batch included)."""
    return task.metrics(split, predict(task, model, split, batch_size, device, precision, progress))


@torch.no_grad()
def predict(task: "Task", model: torch.nn.Module, split: "Split", batch_size: int,
            device: torch.device, precision: str = "fp32", progress: bool = True) -> torch.Tensor:
    """The model's prediction for every example of ``split``, in the split's order (on the CPU)."""
    was_training = model.training
    model.eval()
    order = split.eval_order().to(device)
    chunks = []
    for start in tqdm(range(0, len(split), batch_size), desc="eval", leave=False, disable=not progress):
        inputs, _ = split.batch(order[start:start + batch_size])
        with autocast(device, precision):
            chunks.append(task.predict(model(**inputs)))
    model.train(was_training)
    in_order = torch.cat(chunks)
    predictions = torch.empty_like(in_order)
    predictions[order] = in_order
    return predictions.cpu()


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


def train(task: "Task", preset: Preset, data_dir: Path, out_dir: Path, *, epochs: int | None = None,
          max_minutes: float | None = None, seed: int = 0, device: str = "auto", precision: str = "auto",
          resume: bool = False, progress: bool = True, checkpoint_minutes: float = 5.0, accumulate: int = 1,
          compile: bool = False) -> dict:
    """Train ``preset`` on ``data_dir`` into the run directory ``out_dir``; returns the final metrics.

    Under ``torchrun`` each process takes its share of every batch and DDP averages the gradients;
    ``accumulate`` splits each process's share into that many micro-batches. Either way a step sees
    ``preset.batch_size`` examples, so the run follows the same curve as one process would.
    Rank 0 alone evaluates, writes files and checkpoints.
    """
    wall_start = time.perf_counter()
    world = distributed.world_from_environment()
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / "checkpoint.pt"
    state = None
    if checkpoint_path.exists():
        if not resume:
            raise ConfigError(f"{out_dir}: already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out")
        state = load_checkpoint(checkpoint_path)
        stored = state["preset"]["name"]
        if stored != preset.name:
            raise ConfigError(f"{checkpoint_path}: checkpoint is of preset {stored!r}, not {preset.name!r}")
        seed = state["options"]["seed"]
        epochs = epochs or state["options"]["epochs"]
        max_minutes = max_minutes if max_minutes is not None else state["options"]["max_minutes"]
    epochs = epochs or preset.epochs
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    if max_minutes is not None and max_minutes <= 0:
        raise ConfigError(f"--max-minutes must be positive, got {max_minutes}")
    if accumulate < 1 or preset.batch_size % (world.size * accumulate):
        raise ConfigError(f"the batch of {preset.batch_size} (preset {preset.name!r}) does not split into "
                          f"{world.size} process(es) x {accumulate} accumulation step(s)")
    torch_device = resolve_device(device)
    if torch_device.type == "cuda" and world.size > 1:
        torch_device = torch.device("cuda", world.local_rank)
    precision = resolve_precision(precision, torch_device)
    if torch_device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    distributed.start(world, torch_device)
    progress = progress and world.is_main

    # A resumed run keeps the vocabularies it was built with; the eval split always uses the train split's.
    train_split = task.load(Path(data_dir), "train", preset, state["info"] if state else None).to(torch_device)
    info = train_split.info()
    eval_split = task.load(Path(data_dir), task.eval_split, preset, info).to(torch_device)

    torch.manual_seed(seed)
    model = task.build_model(preset, info).to(torch_device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    run = _Progress()
    history: list[dict] = []
    loss_log: list[list[float]] = []
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run = _Progress(**state["progress"])
        history, loss_log = state["history"], state["loss_log"]
        torch.set_rng_state(state["rng"]["torch"])
        if torch_device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
    if world.size > 1:
        # Dropout masks differ between processes; a single process keeps the seed's stream.
        torch.manual_seed(seed * 1_000_003 + run.step * 101 + world.rank)
    # DDP copies rank 0's weights to every process when it wraps the model.
    step_model = torch.nn.parallel.DistributedDataParallel(model) if world.size > 1 else model
    if compile:
        step_model = torch.compile(step_model)

    options = {"seed": seed, "epochs": epochs, "max_minutes": max_minutes, "precision": precision,
               "device": str(torch_device), "data": str(data_dir), "processes": world.size,
               "accumulate": accumulate, "compile": compile}
    if world.is_main:
        write_json(out_dir / "config.json", {"preset": preset.to_dict(), "options": options, "info": info})
    num_examples = len(train_split)
    batch_size = min(preset.batch_size, num_examples)
    share = batch_size // world.size  # examples of each step on this process
    micro_batch = max(share // accumulate, 1)
    steps_per_epoch = num_examples // batch_size
    total_steps = epochs * steps_per_epoch
    budget = max_minutes * 60 if max_minutes else None

    def save():
        if not world.is_main:
            return
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state() if torch_device.type == "cuda" else None}
        save_checkpoint(checkpoint_path, {
            "preset": preset.to_dict(), "info": info, "options": options, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "progress": vars(run).copy(), "rng": rng,
            "history": history, "loss_log": loss_log})

    def record_evaluation(train_loss: float, train_accuracy: float):
        entry = None
        if world.is_main:
            metrics = evaluate(task, model, eval_split, preset.eval_batch_size, torch_device, precision, progress)
            entry = {"epoch": run.epoch + run.batch_in_epoch / steps_per_epoch, "step": run.step,
                     "train_seconds": run.train_seconds, "train_loss": train_loss,
                     "train_accuracy": train_accuracy, "eval": metrics}
        history.append(world.broadcast(entry))
        if world.is_main:
            write_json(out_dir / "history.json", history)
            plot_curves(history, loss_log, out_dir / "curves.png", task.curve_group, title=preset.name)
            tqdm.write(f"epoch {entry['epoch']:.2f}  step {run.step}  train loss {train_loss:.4f}  "
                       f"train acc {train_accuracy:.4f}  {eval_split.name} acc {entry['eval']['overall']:.4f}")

    model.train()
    stopped_early = False
    with _StopRequest() as stop:
        while run.epoch < epochs and not stopped_early:
            order = train_split.epoch_order(seed, run.epoch, batch_size)
            bar = tqdm(total=steps_per_epoch, initial=run.batch_in_epoch, desc=f"epoch {run.epoch + 1}/{epochs}",
                       disable=not progress, dynamic_ncols=True)
            # Summed loss, correct answers and examples seen on this process since the epoch began.
            totals = torch.zeros(3, device=torch_device)
            last_checkpoint = time.perf_counter()
            step_start = time.perf_counter()
            stop_requested = False
            while run.batch_in_epoch < steps_per_epoch:
                start = run.batch_in_epoch * batch_size + world.rank * share
                mine = order[start:start + share].to(torch_device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(preset, run.step, total_steps, run.train_seconds, budget)
                optimizer.zero_grad(set_to_none=True)
                for first in range(0, share, micro_batch):
                    index = mine[first:first + micro_batch]
                    inputs, targets = train_split.batch(index)
                    last = first + micro_batch >= share
                    # Gradients are averaged across processes once per step, on the last micro-batch.
                    sync = contextlib.nullcontext() if last or world.size == 1 else step_model.no_sync()
                    with sync:
                        with autocast(torch_device, precision):
                            outputs = step_model(**inputs)
                            loss = task.loss(outputs, targets)
                        (loss * (len(index) / share)).backward()
                    totals += torch.stack([loss.detach().float() * len(index),
                                           task.count_correct(outputs.detach(), targets).float(),
                                           torch.tensor(float(len(index)), device=torch_device)])
                if preset.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
                optimizer.step()
                run.step += 1
                run.batch_in_epoch += 1
                bar.update(1)
                # One collective a step agrees on rank 0's clock and on a stop request (Ctrl-C).
                clock_due, stop_now = world.any_each(
                    [world.is_main and time.perf_counter() - step_start >= LOG_EVERY_SECONDS, stop.requested],
                    torch_device)
                if run.step % LOG_EVERY_STEPS == 0 or run.batch_in_epoch == steps_per_epoch or clock_due:
                    loss_sum, correct, seen = world.sum(totals).tolist()  # synchronizes: the time is real
                    now = time.perf_counter()
                    run.train_seconds += now - step_start
                    step_start = now
                    loss_log.append([run.epoch + run.batch_in_epoch / steps_per_epoch, loss_sum / seen])
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                                    lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    # Rank 0's clock decides, so that every process stops at the same step.
                    if world.any(bool(budget) and world.is_main and run.train_seconds >= budget, torch_device):
                        stopped_early = True
                        if world.is_main:
                            tqdm.write(f"time budget of {max_minutes:g} min reached at step {run.step}")
                        break
                    if world.any(world.is_main and now - last_checkpoint >= checkpoint_minutes * 60, torch_device):
                        save()
                        last_checkpoint = time.perf_counter()
                        step_start = last_checkpoint
                if stop_now:
                    stop_requested = True
                    break
            bar.close()
            if stop_requested:
                save()
                world.barrier()
                distributed.stop(world)
                raise KeyboardInterrupt(f"stopped at step {run.step}; continue with --resume")
            loss_sum, correct, seen = world.sum(totals).tolist()
            if run.batch_in_epoch == steps_per_epoch:
                run.epoch += 1
                run.batch_in_epoch = 0
            record_evaluation(loss_sum / max(seen, 1), correct / max(seen, 1))
            save()

    # The loop always records an evaluation: a checkpoint is either mid-run or holds one.
    metrics = history[-1]["eval"]
    samples = run.step * batch_size
    final = {**metrics, "preset": preset.name, "epochs": history[-1]["epoch"], "steps": run.step,
             "train_seconds": round(run.train_seconds, 1),
             "wall_seconds_this_session": round(time.perf_counter() - wall_start, 1),
             "train_samples_per_second": round(samples / run.train_seconds, 1) if run.train_seconds else None,
             "processes": world.size, "parameters": sum(p.numel() for p in model.parameters())}
    if world.is_main:
        write_json(out_dir / "metrics.json", final)
    world.barrier()
    distributed.stop(world)
    return final
