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
# The envelope of the measured recipes: GTEA's 5 + 20 epochs of 11 steps (275 steps, warm-up 20%) is the shortest
# that trains well; THUMOS14's 20 + 20 epochs of 100 steps warm up for half of theirs.
MIN_STEPS = 250
WARMUP_SHARE = (0.1, 0.5)  # warm-up steps / all steps
SHORT_WARMUP_SHARE = 0.2  # what a suggested schedule warms up for (GTEA's)
PAPER_WIDTH = 512  # embed_dim measured best at lr 1e-4 (GTEA: 32.4 average mAP at 512, 20.8 at 256, 11.3 at 128)


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


@dataclass(frozen=True)
class Suggestion:
    """A change of the config the measured recipes suggest: ``keys`` (dotted key -> value) and why."""

    keys: dict[str, object]
    why: str


def suggest_schedule(iters_per_epoch: int, warmup_epochs: int, epochs: int) -> Optional[Suggestion]:
    """Epochs that bring a schedule into the measured envelope: at least :data:`MIN_STEPS` optimiser steps, a
    warm-up of :data:`WARMUP_SHARE` of them; None when it is inside already."""
    total_epochs = warmup_epochs + epochs
    total = total_epochs * iters_per_epoch
    share = warmup_epochs / total_epochs
    if total >= MIN_STEPS and WARMUP_SHARE[0] <= share <= WARMUP_SHARE[1]:
        return None
    n = max(total_epochs, math.ceil(MIN_STEPS / iters_per_epoch))
    warm = max(1, round(SHORT_WARMUP_SHARE * n))
    why = (
        f"{total} optimiser steps with {share:.0%} of them warming up; the measured recipes train at least "
        f"{MIN_STEPS} steps and warm up for {WARMUP_SHARE[0]:.0%}-{WARMUP_SHARE[1]:.0%} of them "
        f"(here {warm * iters_per_epoch} of {n * iters_per_epoch})"
    )
    return Suggestion({"train.warmup_epochs": warm, "train.epochs": n - warm}, why)


def suggest_width(embed_dim: int, lr: float) -> Optional[Suggestion]:
    """The paper's width for a model narrower than it at THUMOS14's learning rate (measured worse on GTEA); None
    otherwise (a narrow model at a raised learning rate is a choice: compare it over seeds)."""
    if embed_dim >= PAPER_WIDTH or lr > 1e-4:
        return None
    why = (
        f"model.embed_dim {embed_dim} at lr {lr:g}: narrower models at lr 1e-4 measured worse on real features "
        "(GTEA, 21 training videos: 32.4 average mAP at 512, 20.8 at 256, 11.3 at 128); to keep a narrow model, "
        "raise train.lr to 1e-3 with it (configs/synth.yaml) and compare over seeds"
    )
    return Suggestion({"model.embed_dim": PAPER_WIDTH, "model.head_dim": PAPER_WIDTH}, why)
