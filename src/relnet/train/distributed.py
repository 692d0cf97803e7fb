"""Training on several processes with ``torchrun``: process-group set-up and the few collective
operations the training loop needs. A plain (non-torchrun) run is a world of one process and
every helper here is then a no-op. A run that torchrun launched joins the process group even
with one process, so `torchrun --nproc_per_node 1` exercises the NCCL (or gloo) path end to end."""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from relnet.errors import ConfigError, shown

# Rank 0 evaluates and checkpoints while the others wait: allow long evaluations.
WAIT_TIMEOUT = timedelta(hours=2)
# Seconds the processes of a world have to meet at MASTER_ADDR:MASTER_PORT (`relnet train --dist-timeout`).
JOIN_TIMEOUT = 300.0
MAX_JOIN_TIMEOUT = 86_400.0
REPORT_EVERY = 5.0  # seconds between the lines that say what a process waits for


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

    def gather(self, value) -> list:
        """Every process's value of a small picklable object, in rank order, on every process."""
        if not self.launched:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

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


def start(world: World, device: torch.device, timeout: float = JOIN_TIMEOUT) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes. The processes meet
    at MASTER_ADDR:MASTER_PORT within ``timeout`` seconds, saying every few seconds what they wait
    for (Ctrl-C stops the wait); else a ConfigError."""
    if not world.launched or dist.is_initialized():
        return
    if not 0 < timeout <= MAX_JOIN_TIMEOUT:
        raise ConfigError(f"--dist-timeout {timeout}: expected seconds > 0 and <= {MAX_JOIN_TIMEOUT:g}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store = _meet(world, timeout)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=world.rank,
                                world_size=world.size, timeout=WAIT_TIMEOUT)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(f"cannot join the torchrun process group ({str(error).splitlines()[0]})") from None


def _master_address() -> tuple[str, int]:
    """MASTER_ADDR and MASTER_PORT, checked: set, a port number, a name that resolves."""
    host, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    if not host or not port:
        raise ConfigError("cannot join the torchrun process group: MASTER_ADDR and MASTER_PORT are not both set "
                          "(torchrun sets them; by hand, give rank 0's address and a free port)")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"cannot join the torchrun process group: MASTER_PORT={shown(port)}: expected a port "
                          f"number from 1 to 65535")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f"cannot join the torchrun process group: MASTER_ADDR={shown(host)} does not resolve "
                          f"({getattr(error, 'strerror', None) or error})") from None
    return host, int(port)


def _meet(world: World, timeout: float) -> dist.TCPStore:
    """The store through which the world's processes met: rank 0 hosts it (unless torchrun's agent
    already does), the others connect; each then counts itself in and waits for the rest."""
    host, port = _master_address()
    deadline = time.monotonic() + timeout
    hosting = world.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    store = _host(port, world) if hosting else _connect(host, port, world, deadline, timeout)
    # (an agent's store outlives a restart of its workers: count each attempt apart)
    joined = f"relnet/joined/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    store.add(joined, 1)
    met = _wait(lambda: store.add(joined, 0) >= world.size, deadline, world,
                lambda: f"waiting for {world.size - store.add(joined, 0)} more of {world.size} processes at "
                        f"{host}:{port}")
    if not met:
        raise ConfigError(f"cannot join the torchrun process group: {store.add(joined, 0)} of {world.size} "
                          f"processes met at {host}:{port} within --dist-timeout {timeout:g} s; start the others "
                          f"with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE (or launch with torchrun)")
    return store


def _host(port: int, world: World) -> dist.TCPStore:
    """The store, listening on every interface; rank 0 reaches its own through the loopback."""
    try:
        return dist.TCPStore("127.0.0.1", port, world.size, is_master=True, timeout=WAIT_TIMEOUT,
                             wait_for_workers=False, multi_tenant=True)
    except RuntimeError as error:  # the port is taken
        raise ConfigError(f"cannot join the torchrun process group: rank 0 cannot listen on MASTER_PORT={port} "
                          f"({str(error).splitlines()[0]})") from None


def _connect(host: str, port: int, world: World, deadline: float, timeout: float) -> dist.TCPStore:
    """A client of the store at host:port, tried every half second (a plain connection first:
    torch's own retries are not interruptible and log every attempt)."""
    if not _wait(lambda: _answers(host, port), deadline, world, lambda: f"waiting for rank 0 at {host}:{port}"):
        raise ConfigError(f"cannot join the torchrun process group: nothing answered at {host}:{port} within "
                          f"--dist-timeout {timeout:g} s; start rank 0 (which listens there), or check MASTER_ADDR "
                          f"and MASTER_PORT")
    seconds_left = max(deadline - time.monotonic(), 1.0)
    try:
        store = dist.TCPStore(host, port, world.size, is_master=False, timeout=timedelta(seconds=seconds_left),
                              wait_for_workers=False)
    except RuntimeError as error:
        raise ConfigError(f"cannot join the torchrun process group at {host}:{port} "
                          f"({str(error).splitlines()[0]})") from None
    store.set_timeout(WAIT_TIMEOUT)
    return store


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def _wait(ready, deadline: float, world: World, waiting_for) -> bool:
    """Whether ``ready()`` came true before ``deadline``; polled, with a line on stderr every few
    seconds saying what this process waits for (``waiting_for()``)."""
    report = time.monotonic() + 1.0
    while not ready():
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= report:
            print(f"relnet: rank {world.rank}: {waiting_for()} ({deadline - now:.0f} s left of --dist-timeout)",
                  file=sys.stderr, flush=True)
            report = now + REPORT_EVERY
        time.sleep(0.5)
    return True


def backend(world: World) -> str | None:
    """The process group's backend ("nccl", "gloo"), None outside torchrun."""
    return dist.get_backend() if world.launched and dist.is_initialized() else None


def stop(world: World) -> None:
    if world.launched and dist.is_initialized():
        dist.destroy_process_group()
