"""What `cltdr check` reports of a training recipe: the schedule in optimiser steps and what the EMA averages
over it. The same rules for every dataset (GTEA, the synthetic presets, THUMOS14); README "Small and custom
datasets" gives the measurements behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from cltdr.training.ema import ema_decay_at

INITIAL_WEIGHT_SHARE = 0.05  # warn when the initial weights keep more than this share of the final EMA


@dataclass(frozen=True)
class Schedule:
    """A schedule in optimiser steps and what its EMA averages at the end."""

    iters_per_epoch: int
    warmup_steps: int
    total_steps: int
    ema_horizon: Optional[float]  # about how many of the last steps the EMA averages at the end (None: no EMA)
    initial_share: Optional[float]  # share of the initial weights in the final EMA (None: no EMA)


def schedule(
    num_videos: int, batch_size: int, warmup_epochs: int, epochs: int, ema_decay: Optional[float], ema_warmup: bool
) -> Schedule:
    """``num_videos`` training videos (one crop each per epoch) in batches of ``batch_size``."""
    iters = max(math.ceil(num_videos / batch_size), 1)
    total = (warmup_epochs + epochs) * iters
    if ema_decay is None:
        return Schedule(iters, warmup_epochs * iters, total, None, None)
    last = ema_decay_at(total - 1, ema_decay, ema_warmup)
    initial_share = math.prod(ema_decay_at(n, ema_decay, ema_warmup) for n in range(total))  # all decays
    return Schedule(iters, warmup_epochs * iters, total, 1.0 / (1.0 - last), initial_share)
