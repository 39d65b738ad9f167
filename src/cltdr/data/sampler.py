"""The batches of one process of a distributed run: its share of the batches one process would train on.

A run of W processes with ``train.batch_size`` b trains on global batches of G = W x b videos: the batches a
single process with batch size G draws (the same shuffle, from the same generator), each cut into W
contiguous shares, process r taking share r. The order is a function of the generator's seed alone
(``make_loader`` seeds it from (seed, epoch)), so a resumed epoch replays exactly. The last global batch of an
epoch may hold fewer than G videos: it is cut as evenly as possible, and a process whose share is empty
(fewer videos than processes) computes the batch's first video as a *stand-in* whose loss counts 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def share_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of process ``rank``'s share of a global batch of ``size`` videos: contiguous, the first
    ``size % world_size`` shares one longer (numpy's ``array_split``)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class GlobalBatchSampler(Sampler[list[int]]):
    """Process ``rank``'s batches of the shuffled ``range(num_videos)`` (module docstring).

    ``generator`` must be the DataLoader's own: it draws one number from it before the first batch, as it does
    before a shuffling sampler's permutation, so the permutation equals a one-process loader's.
    """

    def __init__(
        self, num_videos: int, batch_size: int, *, rank: int, world_size: int, generator: torch.Generator
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.num_videos, self.rank, self.world_size = num_videos, rank, world_size
        self.global_batch = batch_size * world_size
        self.generator = generator

    def __len__(self) -> int:
        return -(-self.num_videos // self.global_batch)

    def stand_in(self, step: int) -> bool:
        """Whether this process's batch at ``step`` (0-based) is a stand-in: its share of it is empty."""
        size = min(self.global_batch, self.num_videos - step * self.global_batch)
        start, stop = share_bounds(size, self.rank, self.world_size)
        return start == stop

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.num_videos, generator=self.generator).tolist()
        for first in range(0, self.num_videos, self.global_batch):
            batch = order[first : first + self.global_batch]
            start, stop = share_bounds(len(batch), self.rank, self.world_size)
            yield batch[start:stop] if stop > start else batch[:1]
