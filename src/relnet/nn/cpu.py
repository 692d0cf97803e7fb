"""What this CPU can do, where layers and the trainer choose a precision by it."""

from __future__ import annotations

import functools

import torch


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512 BF16 or AMX), as PyTorch's CPU
    feature detection reports them. Without them bf16 is emulated and many times slower than fp32."""
    try:
        features = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):  # an older PyTorch without the feature table
        return False
    return isinstance(features, dict) and bool(features.get("avx512_bf16") or features.get("amx_bf16"))
