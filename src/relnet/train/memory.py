"""A model's size against the memory the machine has left: a model too large for it is refused
before its weights are allocated, and running out of memory later is one clear line."""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from pathlib import Path

import torch
from torch import nn

from relnet.errors import ConfigError

BYTES_PER_VALUE = 4  # float32 weights (bf16 autocast keeps them float32)
TRAINING_COPIES = 4  # weights, gradients and Adam's two moments
# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCK_LIMIT = 32 * 2**20  # the largest mmap threshold glibc accepts on 64-bit systems
HEAP_KEEP_LIMIT = 2**30  # freed memory kept at the heap's top before it goes back to the kernel


def keep_freed_memory() -> bool:
    """Let the process keep freed blocks of up to 32 MB for the next training step (glibc only).

    By default glibc hands large freed blocks back to the kernel, and each step then faults the
    same pages in again: 25,000-41,000 page faults a step for the pixel RN on Sort-of-CLEVR, whose
    steps then take 1.49x as long on a busy 2-core CPU (docs/benchmarks.md,
    `benchmarks/malloc_reuse.py`). It is a setting of the whole process, so the command line makes
    it, not the library; MALLOC_* variables or GLIBC_TUNABLES set by the user win. Returns whether
    it was applied.
    """
    if sys.platform != "linux" or any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl's mallopt does nothing and answers 0, glibc's 1 for each value it takes.
    return mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT) == 1 and mallopt(M_TRIM_THRESHOLD, HEAP_KEEP_LIMIT) == 1


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: Python's MemoryError, or torch's
    RuntimeError for a CPU or GPU allocation it could not make."""
    text = str(error)
    return isinstance(error, MemoryError) or isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text)


def check_fits(model: nn.Module, copies: int, device: torch.device, where: str) -> None:
    """A ConfigError when ``copies`` of the model's parameters (and one of its buffers) would not
    fit in the memory ``device`` has left; ``model`` may be on the meta device (sizes only)."""
    parameters = sum(parameter.numel() for parameter in model.parameters())
    need = (parameters * copies + sum(buffer.numel() for buffer in model.buffers())) * BYTES_PER_VALUE
    room = available_bytes(device)
    if room is not None and need > room:
        use = "to train (weights, gradients and Adam's two moments)" if copies == TRAINING_COPIES else "for its weights"
        place = "the GPU" if device.type == "cuda" else "this machine"
        raise ConfigError(f"{where}: its model has {parameters:,} parameters, which need {_amount(need)} {use}; "
                          f"{place} has {_amount(room)} available")


def _amount(size: int) -> str:
    return f"{size / 1e9:,.2f} GB" if size >= 1e8 else f"{size / 1e6:,.2f} MB"


def available_bytes(device: torch.device) -> int | None:
    """The memory this process can still take on ``device``: a GPU's free memory; on the CPU, the
    least of the kernel's MemAvailable, the cgroup's room and the address-space limit's (ulimit -v).
    None when nothing is known."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    known = [room for room in (_mem_available(), _cgroup_room(), _address_space_room()) if room is not None]
    return min(known) if known else None


def _mem_available() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not a POSIX system that says
        return None


def _cgroup_room() -> int | None:
    """What a container's memory limit (cgroup v2) leaves: MemAvailable there counts the host's."""
    limit, used = _read("/sys/fs/cgroup/memory.max").strip(), _read("/sys/fs/cgroup/memory.current").strip()
    return int(limit) - int(used) if limit.isdigit() and used.isdigit() else None


def _address_space_room() -> int | None:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    mapped = next((int(line.split()[1]) * 1024 for line in _read("/proc/self/status").splitlines()
                   if line.startswith("VmSize:")), 0)
    return max(limit - mapped, 0)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
