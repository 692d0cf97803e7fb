"""Throughput of one layer of g (a 256x256 linear layer on all pairs) in fp32 and under bf16 autocast,
and of whole training steps of the CLEVR state-description RN in each.

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


def training_rate(bf16: bool, steps: int = 4, batch: int = 64) -> float:
    """Samples/s of full training steps (forward, backward, Adam) of `clevr-state`'s model on random
    scenes of 10 objects and 30-word questions."""
    from relnet.tasks.clevr.models import StateRN

    torch.manual_seed(0)
    model = StateRN(vocab_size=90, num_answers=28, object_dim=18)
    optimizer = torch.optim.Adam(model.parameters(), 2.5e-4)
    inputs = {"objects": torch.randn(batch, 10, 18), "object_mask": torch.ones(batch, 10, dtype=torch.bool),
              "question": torch.randint(1, 90, (batch, 30)), "question_length": torch.full((batch,), 30)}
    answers = torch.randint(0, 28, (batch,))
    for step in range(steps + 1):
        if step == 1:  # the first step warms up
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(**inputs).float(), answers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"{'rows (batch x pairs)':>22}{'fp32 GFLOP/s':>14}{'bf16 GFLOP/s':>14}")
    for rows in (64 * 36, 64 * 36 * 4, 64 * 625):
        print(f"{rows:>22}{gflops(rows, 256, False):>14.1f}{gflops(rows, 256, True, repeats=3):>14.1f}")
    print(f"clevr-state training steps, samples/s: fp32 {training_rate(False):.0f}, bf16 {training_rate(True):.0f}")


if __name__ == "__main__":
    main()
