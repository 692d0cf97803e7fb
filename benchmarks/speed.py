"""Training speed of relnet's RN against a plain reference RN of the same size, side by side.

    python benchmarks/speed.py                 # ~5 min on 2 CPU cores; add --device cuda on a GPU
    python benchmarks/speed.py --smoke         # seconds: checks the script runs (batch 4, one step)

Each configuration (reference and relnet, fp32 and bf16 autocast) runs --rounds times, the rounds
interleaved, and the median and range of its samples/s are reported: one pass is not enough on a
shared machine. The CPU's model and bf16 instructions are printed with the results.

The model is the Sort-of-CLEVR pixel RN of the most used public implementation: 4 conv layers of
24 kernels (75x75 images -> 5x5 = 25 objects), g 4x256, f 256-256, batch 64, Adam. The
reference is written the straightforward way: every pair is concatenated into a
[batch, 625, 2*26+18] tensor that g's first layer reads, in fp32. Each configuration runs in its
own process, so its peak memory (max resident set on CPU, max allocated on CUDA) is its own.

Also measured: the achieved FLOP/s of g's pair layers (forward and backward) against this
machine's matmul peak for a layer of g's shape, in fp32 and bf16.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from relnet.nn import cell_coordinates, conv_stack, image_to_float, mlp
from relnet.tasks.sort_of_clevr.models import PixelRN

BATCH, IMAGE, QUESTION_DIM, ANSWERS, WIDTH = 64, 75, 18, 11, 256


class ReferenceRN(nn.Module):
    """The straightforward RN: concatenate every pair with the question, run g on it, sum, f."""

    def __init__(self):
        super().__init__()
        self.convs = conv_stack(3, [24] * 4)
        self.g = mlp(2 * 26 + QUESTION_DIM, [WIDTH] * 4)
        self.f = mlp(WIDTH, [WIDTH, WIDTH], out_dim=ANSWERS, dropout=0.5)

    def forward(self, images, question):
        features = self.convs(image_to_float(images))
        batch, channels, height, width = features.shape
        cells = features.flatten(2).transpose(1, 2)
        objects = torch.cat([cells, cell_coordinates(height, width, cells.device).expand(batch, -1, -1)], -1)
        n = objects.shape[1]
        o_i = objects.unsqueeze(2).expand(-1, -1, n, -1)
        o_j = objects.unsqueeze(1).expand(-1, n, -1, -1)
        q = question[:, None, None, :].expand(-1, n, n, -1)
        pairs = torch.cat([o_i, o_j, q], dim=-1).reshape(batch, n * n, -1)
        return self.f(self.g(pairs).sum(1))


def build(name: str, baseline_src: str | None = None) -> nn.Module:
    if name == "reference":
        return ReferenceRN()
    if name == "baseline":
        # Another checkout's relnet (e.g. a git worktree of an earlier commit), imported in this process only.
        for module in [module for module in sys.modules if module == "relnet" or module.startswith("relnet.")]:
            del sys.modules[module]
        sys.path.insert(0, str(Path(baseline_src) / "src"))
        from relnet.tasks.sort_of_clevr.models import PixelRN as BaselinePixelRN
        return BaselinePixelRN(ANSWERS, QUESTION_DIM, g_widths=[WIDTH] * 4, f_widths=[WIDTH, WIDTH], dropout=0.5)
    return PixelRN(ANSWERS, QUESTION_DIM, g_widths=[WIDTH] * 4, f_widths=[WIDTH, WIDTH], dropout=0.5)


def measure_training(name: str, device: str, precision: str, steps: int, batch: int, baseline_src, queue) -> None:
    """`training_rate` in a process of its own, its result put on ``queue``."""
    queue.put(training_rate(name, device, precision, steps, batch, baseline_src))


def training_rate(name: str, device: str, precision: str, steps: int, batch: int, baseline_src=None) -> dict:
    """Samples/s and peak memory of full training steps (forward, backward, Adam). On CPU the peak
    is the process's maximum resident set: run it in a fresh process for a figure of its own."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build(name, baseline_src).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (batch, IMAGE, IMAGE, 3), dtype=torch.uint8, device=dev)
    question = torch.randn(batch, QUESTION_DIM, device=dev)
    answers = torch.randint(0, ANSWERS, (batch,), device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(images, question).float(), answers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"samples_per_second": batch * steps / seconds, "peak_memory_mb": peak / 2**20}


def in_own_process(*args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure_training, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def g_pair_flops(device: torch.device, precision: str, repeats: int, batch: int, pairs: int = 625) -> float:
    """Achieved FLOP/s of g's three pair layers (256x256) over a batch of ``batch`` x ``pairs``
    pairs (Sort-of-CLEVR: 625), forward and backward (the backward pass costs two matmuls per layer)."""
    layers = mlp(WIDTH, [WIDTH] * 3).to(device)
    rows = torch.randn(batch * pairs, WIDTH, device=device, requires_grad=True)
    return _rate(lambda: layers(rows).sum().backward(), 3 * 3 * 2 * batch * pairs * WIDTH * WIDTH, device,
                 precision, repeats)


def matmul_peak(device: torch.device, precision: str, repeats: int, batch: int, pairs: int = 625) -> float:
    """FLOP/s of one plain matmul of g's shape, its operands already in the precision: the ceiling
    for g's layers."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(batch * pairs, WIDTH, device=device, dtype=dtype)
    b = torch.randn(WIDTH, WIDTH, device=device, dtype=dtype)
    return _rate(lambda: a @ b, 2 * batch * pairs * WIDTH * WIDTH, device, "fp32", repeats)


def _rate(work, flops: int, device: torch.device, precision: str, repeats: int) -> float:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return flops * repeats / (time.perf_counter() - start)


def cpu_description() -> str:
    """The CPU's model name and the bf16 matrix instructions PyTorch sees on it."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    features = torch._C._cpu._get_cpu_capability()
    isa = [name for name in ("avx512_bf16", "amx_bf16") if isinstance(features, dict) and features.get(name)]
    return (f"{model}, {os.cpu_count()} cores, PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"bf16 matrix instructions: {', '.join(isa) or 'none'}")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--smoke", action="store_true", help="one step each, to check the script runs")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="also time the relnet of another checkout (e.g. `git worktree add DIR REV`) in bf16")
    args = parser.parse_args()
    steps, repeats, batch, rounds = (1, 1, 4, 1) if args.smoke else (args.steps, 10, BATCH, args.rounds)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print(cpu_description() if device.type == "cpu" else torch.cuda.get_device_name(device))

    configurations = [("reference", "fp32"), ("reference", "bf16"), ("relnet", "fp32"), ("relnet", "bf16")]
    if args.baseline_src:
        configurations.insert(3, ("baseline", "bf16"))
    samples = {f"{name}-{precision}": [] for name, precision in configurations}
    memory = {}
    # Rounds interleave the configurations, so a slow spell of a shared machine touches them all.
    for _ in range(rounds):
        for name, precision in configurations:
            result = in_own_process(name, args.device, precision, steps, batch, args.baseline_src)
            samples[f"{name}-{precision}"].append(result["samples_per_second"])
            memory[f"{name}-{precision}"] = result["peak_memory_mb"]
    results = {"device": str(device), "cpu": cpu_description() if device.type == "cpu" else None, "rounds": rounds,
               "training": {key: {"samples_per_second": values, "median": statistics.median(values),
                                  "peak_memory_mb": memory[key]} for key, values in samples.items()}, "g": {}}
    print(f"\n{'model':<12}{'precision':<11}{'samples/s: median (min-max)':>30}{'peak MB':>10}{'vs reference':>14}")
    for name, precision in configurations:
        key = f"{name}-{precision}"
        ratio = results["training"][key]["median"] / results["training"][f"reference-{precision}"]["median"]
        print(f"{name:<12}{precision:<11}{spread(samples[key]):>30}{memory[key]:>10.0f}{ratio:>13.2f}x")

    print(f"\n{'precision':<11}{'g pair layers GFLOP/s':>26}{'matmul peak GFLOP/s':>26}{'fraction':>10}")
    for precision in ("fp32", "bf16"):
        achieved, peak = [], []
        for _ in range(rounds):
            achieved.append(g_pair_flops(device, precision, repeats, batch) / 1e9)
            peak.append(matmul_peak(device, precision, repeats, batch) / 1e9)
        fraction = statistics.median(achieved) / statistics.median(peak)
        results["g"][precision] = {"achieved_gflops": achieved, "matmul_peak_gflops": peak, "fraction": fraction}
        print(f"{precision:<11}{spread(achieved):>26}{spread(peak):>26}{fraction:>10.0%}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
