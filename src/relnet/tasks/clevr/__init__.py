"""CLEVR: a reader and cache for the official dataset, a CPU generator of CLEVR-format data,
one program executor for both, and the paper's models and baselines."""

from relnet.tasks.clevr.task import Clevr

__all__ = ["Clevr"]
