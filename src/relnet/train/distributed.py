"""Training on several processes with ``torchrun``: process-group set-up and the few collective
operations the training loop needs. A plain (non-torchrun) run is a world of one process and
every helper here is then a no-op. A run that torchrun launched joins the process group even
with one process, so `torchrun --nproc_per_node 1` exercises the NCCL (or gloo) path end to end."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from relnet.errors import ConfigError

# Rank 0 evaluates and checkpoints while the others wait: allow long evaluations.
WAIT_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun: collectives go through the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes (a copy; the input is left as it is)."""
        values = values.clone()
        if self.launched:
            dist.all_reduce(values)
        return values

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on any: keeps decisions to stop in step."""
        return self.any_each([flag], device)[0]

    def any_each(self, flags: list[bool], device: torch.device) -> list[bool]:
        """`any` of several flags in one collective operation (for decisions taken every step)."""
        if not self.launched:
            return list(flags)
        return [bool(total) for total in self.sum(torch.tensor([float(flag) for flag in flags], device=device)).tolist()]

    def broadcast(self, value):
        """Rank 0's value of a small picklable object (metrics), on every process."""
        if not self.launched:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        if self.launched:
            dist.barrier()


def world_from_environment() -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK), else one process."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    values = {}
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        text = os.environ.get(name, default) if launched or name != "RANK" else "0"
        if not text.isascii() or not text.isdigit():
            raise ConfigError(f"environment variable {name}={text!r}: expected a whole number (as torchrun sets it)")
        values[name] = int(text)
    if not launched and ("RANK" in os.environ or "WORLD_SIZE" in os.environ):
        raise ConfigError("RANK and WORLD_SIZE must be set together (torchrun sets both); unset them to run alone")
    if not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise ConfigError(f"RANK={values['RANK']} is not below WORLD_SIZE={values['WORLD_SIZE']}")
    return World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], launched)


def start(world: World, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if world.launched and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=WAIT_TIMEOUT)
        except (ValueError, RuntimeError) as error:  # e.g. no MASTER_ADDR outside torchrun
            raise ConfigError(f"cannot join the torchrun process group ({str(error).splitlines()[0]})") from None


def backend(world: World) -> str | None:
    """The process group's backend ("nccl", "gloo"), None outside torchrun."""
    return dist.get_backend() if world.launched and dist.is_initialized() else None


def stop(world: World) -> None:
    if world.launched and dist.is_initialized():
        dist.destroy_process_group()
