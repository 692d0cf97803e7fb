"""What the benchmark scripts share: running `relnet` commands and training presets in turn."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from relnet.cli import main as relnet


def run(args: list[str]) -> None:
    """`relnet ARGS`, echoed; a failure stops the benchmark."""
    print("$ relnet " + " ".join(args), flush=True)
    code = relnet(args)
    if code:
        raise SystemExit(f"relnet {args[0]} failed with exit code {code}")


INTERRUPTED = 130  # the exit status of `relnet train` stopped by SIGINT or SIGTERM


def run_side_by_side(commands: dict[str, list[str]], out: Path, parallel: int, resume: bool) -> None:
    """Run the named commands (``relnet train`` as a module, each to its own run directory)
    ``parallel`` at a time on one thread each, logging to OUT/NAME.log (appended to when
    ``resume``, which also passes ``--resume``); on the first failure stop the others and exit.
    A run stopped by a signal of its own (`kill -INT PID`: it exits 130, with a checkpoint once it
    has trained) is not a failure: the others go on, and ``resume`` continues it later."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    pending, running = list(commands), {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                name = pending.pop(0)
                cmd = commands[name] + (["--resume"] if resume else [])
                print("$ " + " ".join(cmd[1:]), flush=True)
                log = open(out / f"{name}.log", "a" if resume else "w")
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            time.sleep(1)
            for name, (process, log) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    del running[name]
                    if process.returncode == INTERRUPTED:
                        print(f"{name} stopped by a signal (--resume continues it from its checkpoint, if any)",
                              flush=True)
                    elif process.returncode:
                        raise SystemExit(f"{name} failed (exit {process.returncode}); see {out / (name + '.log')}")
    finally:
        for process, log in running.values():  # a failure, or Ctrl-C: the others stop with a checkpoint
            process.terminate()
            process.wait()
            log.close()


def add_side_by_side_options(parser: argparse.ArgumentParser, runs: str, eval_every: int = 20_000) -> None:
    """The options every side-by-side study shares (``runs`` names what it runs, for the help)."""
    parser.add_argument("--out", type=Path, required=True, help="directory for the runs and the results")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2: one per core here)")
    parser.add_argument("--eval-every", type=int, default=eval_every,
                        help=f"questions between evaluations (default {eval_every})")
    parser.add_argument("--precision", default="auto", help="fp32, bf16 or auto")
    parser.add_argument("--resume", action="store_true", help=f"continue the {runs}' unfinished runs in OUT")
    parser.add_argument("--no-train", action="store_true", help="only summarize the runs already in OUT")
    parser.add_argument("--smoke", action="store_true", help="one epoch per run, to check the script runs")


def run_state(run_dir: Path) -> str:
    """Where a `relnet train` run directory stands: 'new' (no checkpoint), 'sliced' (stopped at
    a slice's end, by a signal or a crash: to be resumed) or 'finished' (its horizon reached, as
    its checkpoint says: `relnet status`)."""
    from relnet.train.status import run_status

    if not (run_dir / "checkpoint.pt").exists():
        return "new"
    return "finished" if run_status(run_dir)["state"] == "finished" else "sliced"


def train_step(task, model, optimizer, inputs, targets, precision: str) -> None:
    """One optimizer step of ``model`` on a batch, on the CPU, as `relnet train` takes it."""
    import torch

    from relnet.train.loop import autocast

    optimizer.zero_grad(set_to_none=True)
    with autocast(torch.device("cpu"), precision):
        loss = task.loss(model(**inputs), targets)
    loss.backward()
    optimizer.step()


def interleaved_rates(steps: dict, rounds: int, count: int, items_per_step: dict[str, int],
                      before=None) -> dict[str, float]:
    """Median items per second of each named step function (``items_per_step[name]`` items a
    call), ``count`` timed calls per round after one untimed, the names taking turns for ``rounds``
    rounds so that a shared machine's noise falls on all of them alike; ``before(name)`` runs
    before each name's turn."""
    import statistics

    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            if before is not None:
                before(name)
            step()  # warm-up, untimed
            start = time.perf_counter()
            for _ in range(count):
                step()
            rates[name].append(count * items_per_step[name] / (time.perf_counter() - start))
    return {name: round(statistics.median(values), 1) for name, values in rates.items()}


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """--precision, passed on to every `relnet train` of the benchmark."""
    parser.add_argument("--precision", default="auto", help="fp32, bf16 or auto, passed to `relnet train` "
                        "(bf16 trains 2 to 2.4x as fast on CPUs with avx512_bf16, 1.4-9x slower without)")


def train_presets(budgets: dict[str, float | None], presets: list[str], data: Path, out: Path, smoke: bool,
                  evaluate: bool = False, train_options: list[str] | None = None) -> dict[str, dict]:
    """Train each preset into OUT/PRESET within its budget in minutes (None: its own horizon; one
    epoch when ``smoke``), with any further `relnet train` options, optionally `relnet eval` it
    too; returns each run's metrics.json."""
    summary = {}
    for preset in presets:
        run_dir = out / preset
        minutes = budgets[preset]
        budget = ["--epochs", "1"] if smoke else [] if minutes is None else ["--max-minutes", str(minutes)]
        run(["train", "--preset", preset, "--data", str(data), "--out", str(run_dir), "--no-progress", *budget,
             *(train_options or [])])
        if evaluate:
            run(["eval", str(run_dir), "--data", str(data), "--no-progress"])
        summary[preset] = json.loads((run_dir / "metrics.json").read_text())
    return summary


def write_small_datasets(root: Path, clevr_images: int = 16, workers: int = 1, seed: int = 0) -> dict[str, Path]:
    """A few examples of every benchmark's data, written by relnet's own generators (bAbI, whose
    files cannot be generated, gets synthetic stories in the official format), for checks and
    throughput measurements that need the real loaders' shapes but not real accuracy. Returns
    each task's data directory."""
    from relnet.tasks.clevr.data import prepare
    from relnet.tasks.clevr.generate import GeneratorOptions, generate
    from relnet.tasks.physics.data import write_dataset as write_physics
    from relnet.tasks.sort_of_clevr.data import write_dataset as write_sort_of_clevr

    root = Path(root)
    write_sort_of_clevr(root / "sort-of-clevr", train_images=12, test_images=6, seed=seed, progress=False)
    write_physics(root / "physics", train_scenes=64, test_scenes=16, seed=seed, progress=False)
    write_synthetic_babi(root / "babi", seed)
    for split, images in (("train", clevr_images), ("val", max(clevr_images // 2, 1))):
        generate(root / "clevr-raw", GeneratorOptions(images=images, questions_per_image=5, split=split, seed=seed),
                 workers=workers, progress=False)
    prepare(root / "clevr-raw", root / "clevr", workers=workers, progress=False)
    return {"sort-of-clevr": root / "sort-of-clevr", "babi": root / "babi", "physics-connections": root / "physics",
            "physics-count": root / "physics", "clevr": root / "clevr"}


def write_synthetic_babi(directory: Path, seed: int = 0, stories: int = 6, statements: int = 24) -> None:
    """bAbI-format train and valid files for all 20 tasks: stories of ``statements`` sentences of 4
    to 10 words, a question after each, so that batches have the shapes of real bAbI batches (the
    20 most recent sentences)."""
    import random

    from relnet.tasks.babi.data import TASK_NAMES

    names, places = ["mary", "john", "sandra", "daniel"], ["kitchen", "garden", "office", "hallway", "bathroom"]
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for task in TASK_NAMES:
        for split in ("train", "valid"):
            lines = []
            for _ in range(stories):
                for number in range(1, statements + 1):
                    padding = " ".join(rng.choice(["then", "quickly", "later"]) for _ in range(rng.randint(0, 6)))
                    lines.append(f"{number} {rng.choice(names).title()} {padding} went to the {rng.choice(places)}.")
                person = rng.choice(names)
                lines.append(f"{statements + 1} Where is {person.title()}?\t{rng.choice(places)}\t1")
            (directory / f"qa{task}_{split}.txt").write_text("\n".join(lines) + "\n")


def sized_to_cache(preset, data_dir: Path):
    """The preset as it trains on ``data_dir``: one sized for an image side (CLEVR's
    data.image_size) takes the side of the images cached there; any other as it is."""
    if "image_size" not in preset.data:
        return preset
    size = json.loads((Path(data_dir) / "vocab.json").read_text())["image_size"]
    return preset.with_overrides([f"data.image_size={size}"])


def preset_batch(preset, data_dir: Path, batch_size: int, device, seed: int = 0):
    """``(task, model, inputs, targets)``: the preset's model on ``device`` and one batch of
    ``batch_size`` examples drawn (with replacement) from the train split in ``data_dir``, built by
    the task's own loader, so its shapes are those of real training batches; a size-bound preset
    at the cache's size (``sized_to_cache``)."""
    import torch

    from relnet.tasks import get_task

    preset = sized_to_cache(preset, data_dir)
    task = get_task(preset.task)
    split = task.load(Path(data_dir), "train", preset).to(device)
    torch.manual_seed(seed)
    model = task.build_model(preset, split.info()).to(device)
    index = torch.randint(len(split), (batch_size,), generator=torch.Generator().manual_seed(seed))
    inputs, targets = split.batch(index.to(device))
    return task, model, inputs, targets


def babi_answers(spec: str, data: Path, split_name: str, tasks: list[int]) -> list[str]:
    """A trained bAbI model's answers (``pretrained:NAME``, an exported model or a run directory)
    to the questions of ``tasks`` in ``data``'s ``split_name`` files, in the files' order."""
    import dataclasses

    from relnet.pretrained import load_trained
    from relnet.train.loop import predict

    task, preset, info, model = load_trained(spec)
    preset = dataclasses.replace(preset, data={**preset.data, "tasks": tasks, "oversample": {}})
    split = task.load(data, split_name, preset, info)
    names = task.answer_names(info)
    return [names[i] for i in predict(task, model, split, 256, "cpu", progress=False).tolist()]
