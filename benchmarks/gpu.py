"""relnet on a GPU: one prepared script that measures everything that needs one.

    python benchmarks/gpu.py --out DIR             # <= 8 min on one H100-class GPU with 16 CPU cores
    python benchmarks/gpu.py --out DIR --smoke     # a minute on a CPU: every stage at tiny sizes

Stages, in this order, each in a process of its own with its own time limit (a stage that fails
or overruns is reported and skipped; its partial figures are kept):

    environment    torch, CUDA, GPU name and memory, CPU cores
    tests          `pytest -m cuda`: the RN, masks and chunking, every preset's step, bf16 autocast,
                   a run trained on the GPU evaluated on the CPU
    throughput     every preset on batches of its real shapes (its loader, its batch size: the CLEVR
                   pixel model at 640): samples/s and peak memory, eager fp32 and bf16 for all, then
                   `torch.compile` in bf16 and fp32, most used presets first, while the stage's time lasts
    reference      relnet against the plain reference RN of benchmarks/speed.py, and the TFLOP/s of
                   g's pair layers against a plain bf16 matmul of the same shape
    torchrun       `torchrun --nproc_per_node 1` training run: the NCCL path end to end
    sort-of-clevr  data generated there, `sort-of-clevr-pixels` trained: table and time to accuracy
    clevr          `relnet data clevr-gen --workers N`, cached, `clevr-pixels` trained for the time left

Writes DIR/gpu.json (every figure), DIR/logs/STAGE.log and DIR/runs/ (checkpoints, curves),
the generated data under --work (default DIR/work), and prints a summary. The stages' limits add
up to --total-seconds (default 470); time a stage leaves unused goes to the last one (CLEVR
training). It needs only what relnet needs (PyTorch, NumPy, Pillow, matplotlib, tqdm,
safetensors) and pytest; no network. Run it from the repository root, relnet installed
(`pip install --no-deps -e .`) or not (it puts src/ on the path of every process it starts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this script's own folder (common, speed) is on the path already

# Throughput: the presets people train most come first, so a short stage measures them.
PRIORITY = ["clevr-pixels", "sort-of-clevr-pixels", "clevr-state", "babi", "physics-connections", "physics-count",
            "sort-of-clevr-state"]
# Sort-of-CLEVR accuracy targets (docs/benchmarks.md) whose time to reach is reported.
TARGETS = {"non_relational": (0.9, 0.99), "binary": (0.9, 0.95)}


@dataclass(frozen=True)
class Stage:
    name: str
    planned: float  # seconds, in a full run
    minimum: float  # seconds kept back for it while earlier stages run


STAGES = [Stage("environment", 10, 5), Stage("tests", 60, 30), Stage("throughput", 100, 40),
          Stage("reference", 30, 15), Stage("torchrun", 40, 20), Stage("sort-of-clevr", 140, 60),
          Stage("clevr", 90, 45)]
SMOKE_LIMIT = 240.0  # seconds per stage in --smoke mode


@dataclass
class Context:
    """What a stage gets: where to write, what to run on, and its time limit."""

    name: str
    out: Path  # figures, logs and runs
    work: Path  # generated data
    device: str
    smoke: bool
    seconds: float
    workers: int
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def save(self, result: dict) -> None:
        """The stage's figures so far: kept if the stage is stopped at its limit."""
        (self.out / "stages" / f"{self.name}.json").write_text(json.dumps(result, indent=2))


def child_env() -> dict:
    """The environment of every process started: src/ importable, one line per progress message."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def relnet(args: list[str], seconds: float | None = None) -> None:
    """`relnet ARGS` in a child process, echoed, its output in this stage's log; a failure raises."""
    print("$ relnet " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "relnet.cli", *args], check=True, env=child_env(), timeout=seconds)


# ---------------------------------------------------------------- stages


def environment(ctx: Context) -> dict:
    import torch

    from speed import cpu_description

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "cpu_cores": os.cpu_count(), "device": ctx.device,
            "commit": _commit()}
    if ctx.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=properties.name, gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                    compute_capability=f"{properties.major}.{properties.minor}", gpus=torch.cuda.device_count(),
                    bf16_supported=torch.cuda.is_bf16_supported())
    info["cpu"] = cpu_description()
    for key, value in info.items():
        print(f"{key:<20}{value}")
    return info


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def tests(ctx: Context) -> dict:
    """`pytest -m cuda`; on a machine without CUDA every case is skipped (and counted)."""
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "tests"]
    print("$ " + " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                            timeout=max(ctx.left() - 5, 5))
    print(result.stdout[-20000:], result.stderr[-5000:], sep="\n", flush=True)
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", result.stdout)}
    if result.returncode != 0:
        raise RuntimeError(f"pytest -m cuda exited with {result.returncode}: {counts}")
    return {"returncode": result.returncode, "counts": counts}


def throughput(ctx: Context) -> dict:
    """Samples/s and peak GPU memory of training steps of every preset, one configuration at a time."""
    import torch

    from common import write_small_datasets
    from relnet.tasks import PRESETS

    if ctx.device == "cuda":
        torch.set_float32_matmul_precision("high")  # fp32 as `relnet train` runs it on CUDA: TF32 matmuls
    data = write_small_datasets(ctx.work / "small-data", clevr_images=4 if ctx.smoke else 32, workers=ctx.workers)
    names = PRIORITY + sorted(set(PRESETS) - set(PRIORITY))
    plan = [(name, False, precision) for precision in ("fp32", "bf16") for name in names]
    if ctx.smoke:
        plan.append(("sort-of-clevr-state", True, "bf16"))  # one compilation checks the path
    else:
        plan += [(name, True, precision) for precision in ("bf16", "fp32") for name in names]
    results = {"configurations": [], "not_measured": []}
    for name, compile_model, precision in plan:
        key = {"preset": name, "compile": compile_model, "precision": precision}
        # A compilation takes tens of seconds: none is started without a minute left.
        if ctx.left() < (60 if compile_model and not ctx.smoke else 10):
            results["not_measured"].append(key)
            continue
        try:
            measured = train_steps(PRESETS[name], data[PRESETS[name].task], ctx, compile_model, precision)
        except Exception as error:  # noqa: BLE001 - one configuration's failure (e.g. out of memory) is a result
            measured = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        results["configurations"].append({**key, **measured})
        print(json.dumps(results["configurations"][-1]), flush=True)
        ctx.save(results)
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    return results


def train_steps(preset, data_dir: Path, ctx: Context, compile_model: bool, precision: str) -> dict:
    """Full training steps (forward, backward, AdamW) of ``preset`` on one batch of its real shape."""
    import torch

    from common import preset_batch
    from relnet.train.loop import autocast

    device = torch.device(ctx.device)
    batch_size = 2 if ctx.smoke else preset.batch_size
    task, model, inputs, targets = preset_batch(preset, data_dir, batch_size, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.lr)
    if compile_model:
        torch._dynamo.reset()  # each preset compiles afresh, clear of the previous one's cache
    step_model = torch.compile(model) if compile_model else model

    def step():
        with autocast(device, precision):
            loss = task.loss(step_model(**inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()  # the first step compiles (with --compile) and warms up
    synchronize()
    first_step = time.perf_counter() - start
    for _ in range(0 if ctx.smoke else 2):
        step()
    synchronize()
    # At least 5 steps and one second (one step in smoke mode), at most 200 steps.
    fewest, most = (1, 1) if ctx.smoke else (5, 200)
    steps, start = 0, time.perf_counter()
    while steps < fewest or steps < most and time.perf_counter() - start < 1.0:
        step()
        steps += 1
        if steps % 5 == 0:  # a GPU queues work: wait for it, so that the clock above is honest
            synchronize()
    synchronize()
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "steps": steps, "samples_per_second": round(batch_size * steps / seconds, 1),
            "first_step_seconds": round(first_step, 2),
            "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None}


def reference(ctx: Context) -> dict:
    """relnet's pixel RN against the straightforward reference RN (benchmarks/speed.py), and g's
    pair layers against a plain matmul of their shape, in two interleaved rounds (medians)."""
    import statistics

    import torch

    import speed

    batch, steps, repeats, rounds = (4, 1, 1, 1) if ctx.smoke else (speed.BATCH, 30, 20, 2)
    samples: dict[str, list[float]] = {}
    memory = {}
    for _ in range(rounds):
        for name in ("reference", "relnet"):
            for precision in ("fp32", "bf16"):
                result = speed.training_rate(name, ctx.device, precision, steps, batch)
                samples.setdefault(f"{name}-{precision}", []).append(result["samples_per_second"])
                memory[f"{name}-{precision}"] = round(result["peak_memory_mb"])
    training = {key: {"samples_per_second": statistics.median(values), "rounds": values, "peak_memory_mb": memory[key]}
                for key, values in samples.items()}
    for precision in ("fp32", "bf16"):
        training[f"relnet-{precision}"]["vs_reference"] = round(
            training[f"relnet-{precision}"]["samples_per_second"] / training[f"reference-{precision}"]["samples_per_second"], 2)
    device = torch.device(ctx.device)
    # g's shapes: Sort-of-CLEVR's 64 x 25^2 pairs, and the CLEVR pixel model's 640 x 8^2 x 8^2 pairs.
    shapes = {"sort-of-clevr (64 x 625 pairs)": (batch, 625)}
    if not ctx.smoke:
        shapes["clevr-pixels (640 x 4096 pairs)"] = (640, 4096)
    g = {}
    for label, (rows, pairs) in shapes.items():
        reps = 1 if ctx.smoke else (repeats if pairs == 625 else 3)
        achieved = statistics.median(speed.g_pair_flops(device, "bf16", reps, rows, pairs) for _ in range(rounds))
        peak = statistics.median(speed.matmul_peak(device, "bf16", reps, rows, pairs) for _ in range(rounds))
        g[label] = {"g_tflops": round(achieved / 1e12, 3), "matmul_tflops": round(peak / 1e12, 3),
                    "fraction": round(achieved / peak, 3)}
        print(label, g[label], flush=True)
    return {"batch": batch, "training": training, "g_bf16": g}


def torchrun(ctx: Context) -> dict:
    """One process launched by torchrun trains a short preset: it joins a process group (NCCL on a GPU)."""
    from relnet.tasks.sort_of_clevr.data import write_dataset

    data, run = ctx.work / "torchrun-data", ctx.out / "runs" / "torchrun"
    write_dataset(data, train_images=12 if ctx.smoke else 1000, test_images=6 if ctx.smoke else 200, progress=False)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
               "relnet.cli", "train", "--preset", "sort-of-clevr-state", "--data", str(data), "--out", str(run),
               "--epochs", "1", "--device", ctx.device, "--no-progress"]
    print("$ " + " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, env=child_env(), timeout=max(ctx.left() - 5, 5))
    options = json.loads((run / "config.json").read_text())["options"]
    metrics = json.loads((run / "metrics.json").read_text())
    return {"backend": options["backend"], "processes": options["processes"], "overall": metrics["overall"],
            "train_samples_per_second": metrics["train_samples_per_second"]}


def sort_of_clevr(ctx: Context) -> dict:
    """Generate Sort-of-CLEVR, train the pixel RN for the stage's time, report time to accuracy."""
    data, run = ctx.work / "sort-of-clevr-data", ctx.out / "runs" / "sort-of-clevr-pixels"
    start = time.perf_counter()
    relnet(["data", "sort-of-clevr", "--out", str(data), "--no-progress"]
           + (["--train-images", "12", "--test-images", "6"] if ctx.smoke else []))
    data_seconds = time.perf_counter() - start
    # The budget counts training steps only: evaluations and start-up need the margin.
    finished = train_in_time_left(ctx, "sort-of-clevr-pixels", data, run, "128" if ctx.smoke else "100000")
    return {"data_seconds": round(data_seconds, 1), **training_summary(run, finished, "by_kind", TARGETS)}


def clevr(ctx: Context) -> dict:
    """Render CLEVR-style data with every core, cache it, train `clevr-pixels` for the time left."""
    raw, cache, run = ctx.work / "clevr-raw", ctx.work / "clevr-cache", ctx.out / "runs" / "clevr-pixels"
    images = {"train": 8, "val": 4} if ctx.smoke else {"train": 2500, "val": 400}
    start = time.perf_counter()
    for split, count in images.items():
        relnet(["data", "clevr-gen", "--out", str(raw), "--split", split, "--images", str(count), "--workers",
                str(ctx.workers), "--seed", "0", "--no-progress"])
    render_seconds = time.perf_counter() - start
    relnet(["data", "clevr", "--clevr-dir", str(raw), "--out", str(cache), "--workers", str(ctx.workers),
            "--no-progress"])
    data_seconds = time.perf_counter() - start
    finished = train_in_time_left(ctx, "clevr-pixels", cache, run, "40" if ctx.smoke else "5000")
    return {"images": images, "render_images_per_second": round(sum(images.values()) / render_seconds, 1),
            "data_seconds": round(data_seconds, 1), **training_summary(run, finished, "by_category")}


def train_in_time_left(ctx: Context, preset: str, data: Path, run: Path, eval_every: str) -> bool:
    """Train ``preset`` for most of the stage's time left (start-up and evaluations need the rest;
    the budget counts training steps only). Returns False when the run had to be stopped before
    its final evaluation: its evaluations so far are in its history."""
    budget = ["--epochs", "1"] if ctx.smoke else ["--max-minutes", f"{max(0.75 * (ctx.left() - 20), 10) / 60:.2f}"]
    try:
        relnet(["train", "--preset", preset, "--data", str(data), "--out", str(run), "--device", ctx.device,
                "--no-progress", "--eval-every", eval_every, *budget], seconds=max(ctx.left() - 3, 5))
        return True
    except subprocess.TimeoutExpired:
        print(f"{preset}: stopped at the stage's limit; reporting its evaluations so far", flush=True)
        return False


def training_summary(run: Path, finished: bool, group: str, targets: dict[str, tuple[float, ...]] | None = None) -> dict:
    """A run's last evaluation, its evaluations against examples seen, and when each target was first met."""
    history = json.loads((run / "history.json").read_text())
    curve = [{"questions_seen": entry["questions_seen"], "train_seconds": round(entry["train_seconds"], 1),
              "train_loss": entry["train_loss"] and round(entry["train_loss"], 4), "overall": round(entry["eval"]["overall"], 4),
              "eval_examples": entry["eval_examples"],
              **{key: round(value, 4) for key, value in entry["eval"].get(group, {}).items()}} for entry in history]
    last = curve[-1]
    options = json.loads((run / "config.json").read_text())["options"]
    summary = {"finished": finished, "final": {**last, "train_samples_per_second": round(
        last["questions_seen"] / last["train_seconds"], 1) if last["train_seconds"] else None,
        "precision": options["precision"], "device": options["device"]}, "curve": curve}
    if targets:
        summary["time_to_accuracy"] = {}
        for kind, thresholds in targets.items():
            for threshold in thresholds:
                first = next((point for point in curve if point.get(kind, 0) >= threshold), None)
                summary["time_to_accuracy"][f"{kind} >= {threshold:.0%}"] = None if first is None else \
                    {"train_seconds": first["train_seconds"], "questions_seen": first["questions_seen"]}
    return summary


STAGE_FUNCTIONS = {"environment": environment, "tests": tests, "throughput": throughput, "reference": reference,
                   "torchrun": torchrun, "sort-of-clevr": sort_of_clevr, "clevr": clevr}


# ---------------------------------------------------------------- orchestration


def run_stage(args) -> None:
    """Inside a stage's own process: run it and write its result."""
    ctx = Context(args.stage, Path(args.out), Path(args.work), args.device, args.smoke, args.seconds, args.workers)
    ctx.save(STAGE_FUNCTIONS[args.stage](ctx))


def launch(stage: str, args, seconds: float) -> dict:
    """Run one stage in a new process group, stopped (with every process it started) at its limit."""
    out = Path(args.out)
    log = out / "logs" / f"{stage}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--out", str(out), "--work", args.work,
               "--device",
               args.device, "--seconds", f"{seconds:.1f}", "--workers", str(args.workers)] + (["--smoke"] if args.smoke else [])
    start = time.perf_counter()
    with open(log, "w") as file:
        process = subprocess.Popen(command, stdout=file, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT,
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=seconds)
            status = "ok" if returncode == 0 else f"failed (exit code {returncode})"
        except subprocess.TimeoutExpired:
            _stop_group(process)
            status = f"stopped at its limit of {seconds:.0f} s"
    result_file = out / "stages" / f"{stage}.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    entry = {"status": status, "seconds": round(time.perf_counter() - start, 1), "limit_seconds": round(seconds, 1),
             "log": str(log.relative_to(out)), "result": result}
    if status != "ok":
        entry["log_tail"] = log.read_text(errors="replace")[-3000:]
    return entry


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the stage and its children (training runs checkpoint and stop), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def orchestrate(args) -> dict:
    out = Path(args.out)
    for folder in ("logs", "stages", "runs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    chosen = [stage for stage in STAGES if not args.stages or stage.name in args.stages]
    deadline = time.perf_counter() + args.total_seconds
    report = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "smoke": args.smoke, "stages": {}}
    for position, stage in enumerate(chosen):
        if args.smoke:
            seconds = SMOKE_LIMIT
        else:  # its plan, or less so that the later stages keep their minimum; the last takes what is left
            later = sum(next_stage.minimum for next_stage in chosen[position + 1:])
            left = deadline - time.perf_counter()
            seconds = left if position == len(chosen) - 1 else min(stage.planned, left - later)
            seconds = max(seconds, 0)
        if seconds < stage.minimum / 2 and not args.smoke:
            report["stages"][stage.name] = {"status": "not run: no time left", "result": None}
            continue
        print(f"== {stage.name} (limit {seconds:.0f} s)", flush=True)
        report["stages"][stage.name] = entry = launch(stage.name, args, seconds)
        print(f"   {entry['status']} in {entry['seconds']} s", flush=True)
        (out / "gpu.json").write_text(json.dumps(report, indent=2))
    print_summary(report)
    return report


def print_summary(report: dict) -> None:
    stages = report["stages"]
    print("\nstage           status                                   seconds")
    for name, entry in stages.items():
        print(f"{name:<16}{entry['status']:<41}{entry.get('seconds', '')}")
    environment_result = (stages.get("environment") or {}).get("result") or {}
    if environment_result:
        print(f"\n{environment_result.get('gpu') or environment_result.get('cpu')}, torch {environment_result['torch']}, "
              f"CUDA {environment_result['cuda']}")
    throughput_result = (stages.get("throughput") or {}).get("result") or {}
    if throughput_result:
        print(f"\n{'preset':<26}{'mode':<9}{'precision':<11}{'batch':>7}{'samples/s':>12}{'peak MB':>9}{'1st step s':>11}")
        for row in throughput_result["configurations"]:
            mode = "compile" if row["compile"] else "eager"
            if "error" in row:
                print(f"{row['preset']:<26}{mode:<9}{row['precision']:<11}  {row['error'][:60]}")
                continue
            peak = "" if row["peak_memory_mb"] is None else row["peak_memory_mb"]
            print(f"{row['preset']:<26}{mode:<9}{row['precision']:<11}{row['batch_size']:>7}"
                  f"{row['samples_per_second']:>12,.0f}{peak:>9}{row['first_step_seconds']:>11}")
        if throughput_result["not_measured"]:
            print(f"not measured (stage time limit): {len(throughput_result['not_measured'])} configurations")
    reference_result = (stages.get("reference") or {}).get("result") or {}
    if reference_result:
        print()
        for key, row in reference_result["training"].items():
            ratio = f"  {row['vs_reference']}x the reference" if "vs_reference" in row else ""
            print(f"{key:<18}{row['samples_per_second']:>10,.0f} samples/s  {row['peak_memory_mb']:>6} MB{ratio}")
        for label, row in reference_result["g_bf16"].items():
            print(f"g bf16, {label}: {row['g_tflops']} TFLOP/s, plain matmul {row['matmul_tflops']} "
                  f"({row['fraction']:.0%})")
    for name in ("torchrun", "sort-of-clevr", "clevr"):
        result = (stages.get(name) or {}).get("result")
        if result:
            shown = {key: value for key, value in result.items() if key != "curve"}
            print(f"\n{name}: {json.dumps(shown)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for gpu.json, logs and runs")
    parser.add_argument("--work", help="directory for the generated data (default: OUT/work)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on whatever device, to check every stage runs")
    parser.add_argument("--device", help="cuda (default when available) or cpu")
    parser.add_argument("--total-seconds", type=float, default=470.0,
                        help="time for all stages together (default 470; --smoke: each stage up to 240 s)")
    parser.add_argument("--stages", nargs="+", choices=[stage.name for stage in STAGES],
                        help="run only these stages (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="data-generation processes")
    parser.add_argument("--stage", choices=list(STAGE_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.work = args.work or str(Path(args.out) / "work")
    if args.stage:
        run_stage(args)
        return
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: exists and is not a directory")
    if (out / "gpu.json").exists():
        raise SystemExit(f"--out {out}: already holds a GPU run (gpu.json); choose another directory")
    report = orchestrate(args)
    failed = [name for name, entry in report["stages"].items() if entry["status"] != "ok"]
    print(f"\nwrote {out / 'gpu.json'}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
