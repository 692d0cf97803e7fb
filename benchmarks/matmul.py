"""Throughput of one layer of g (a 256x256 linear layer on all pairs) in fp32 and under bf16 autocast.

    python benchmarks/matmul.py

Decides the default precision: `relnet train --precision auto` uses bf16 only on CUDA, because CPUs
without native bf16 matrix instructions (no AVX-512 BF16 or AMX) run bf16 matmuls far slower than fp32.
"""

from __future__ import annotations

import time

import torch


def gflops(rows: int, width: int, bf16: bool, repeats: int = 20) -> float:
    layer = torch.nn.Linear(width, width)
    x = torch.randn(rows, width)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(3):
            layer(x)
        start = time.perf_counter()
        for _ in range(repeats):
            layer(x)
        seconds = (time.perf_counter() - start) / repeats
    return 2 * rows * width * width / seconds / 1e9


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"{'rows (batch x pairs)':>22}{'fp32 GFLOP/s':>14}{'bf16 GFLOP/s':>14}")
    for rows in (64 * 36, 64 * 36 * 4, 64 * 625):
        print(f"{rows:>22}{gflops(rows, 256, False):>14.1f}{gflops(rows, 256, True, repeats=3):>14.1f}")


if __name__ == "__main__":
    main()
