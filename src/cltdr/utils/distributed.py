"""Processes of a run launched by ``torchrun``: the process group, counts summed over processes, gathering.

``torchrun --nproc_per_node N -m cltdr train ...`` starts N processes and sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address in their environment; :func:`start` reads them and joins the process group, with NCCL
when the run's device is CUDA (each process on GPU LOCAL_RANK) and gloo on the CPU. Started any other way, or
with one process, nothing is initialised and every function here is the single-process identity, so that a
one-process run computes exactly what it computed before distributed training existed.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")

_ignored = False  # within :func:`counts_ignored`: this process adds nothing to :func:`global_sum`


@dataclass(frozen=True)
class Process:
    """This process's place in the run: ``rank`` of ``world_size`` processes (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank on this node: the GPU this process uses

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files, logs and progress bars (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched() -> Process:
    """The process as torchrun's environment describes it (one process when the variables are absent)."""
    env = os.environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return Process()
    return Process(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))


def current() -> Process:
    """This process within the initialised process group (one process when none is)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Process()
    return Process(dist.get_rank(), dist.get_world_size(), launched().local_rank)


def start(device: torch.device) -> tuple[Process, torch.device]:
    """Join the process group torchrun describes (once per process), and the device this process computes on.

    ``device``: the run's device; a CUDA device becomes ``cuda:LOCAL_RANK`` and the backend NCCL, the CPU keeps
    gloo. Without torchrun, or with one process: nothing is initialised and ``device`` is returned as it is.
    """
    proc = launched()
    if not proc.distributed:
        return proc, device
    if device.type == "cuda":
        device = torch.device("cuda", proc.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return current(), device


def stop() -> None:
    """Leave the process group (at the end of a command; nothing when none was joined).

    A DistributedDataParallel model's reducer holds the group. Left in a reference cycle (the trainer was in one
    until its schedule stopped closing over it), it is collected only during interpreter shutdown, tearing the
    group's C++ threads down there, which can abort a finished run ("terminate called without an active
    exception", seen once at the end of a 2-process test run). Collecting first lets destroy_process_group free
    the group itself, whatever cycle is left."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    if current().distributed:
        dist.barrier()


def global_sum(count: Tensor) -> Tensor:
    """``count`` summed over the processes (a new tensor; ``count`` itself with one process). Used for what a
    loss divides by, so that every process divides its share of the global batch by the global batch's count.
    A process inside :func:`counts_ignored` adds 0."""
    if not current().distributed:
        return count
    total = torch.zeros_like(count) if _ignored else count.detach().clone()
    dist.all_reduce(total)
    return total


@contextlib.contextmanager
def counts_ignored() -> Iterator[None]:
    """Within it this process adds nothing to :func:`global_sum` (a process whose share of the last global batch
    is empty computes a stand-in video whose loss is multiplied by 0: its counts must not count either)."""
    global _ignored
    _ignored, before = True, _ignored
    try:
        yield
    finally:
        _ignored = before


def gather(obj: T) -> list[T]:
    """Every process's ``obj`` (picklable), in rank order, on every process; ``[obj]`` with one process."""
    proc = current()
    if not proc.distributed:
        return [obj]
    out: list[Any] = [None] * proc.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(num_items: int, proc: Process | None = None) -> range:
    """The items ``rank, rank + world_size, ...`` of ``range(num_items)``: this process's share of an
    evaluation (every item once over the processes, the shares' sizes within 1 of each other)."""
    proc = proc or current()
    return range(proc.rank, num_items, proc.world_size)
