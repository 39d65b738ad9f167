"""Exponential moving average of a model's weights, used for evaluation."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn


def ema_decay_at(step: int, decay: float, warmup_power: Optional[float]) -> float:
    """The decay used by the ``step``-th update (0-based): ``min(decay, 1 - (1 + step) ** -warmup_power)``.

    Without a warm-up a decay of 0.999 still gives the initial weights 0.999^n of the average after n steps
    (61% after 500 steps: a small dataset's whole schedule). With it the EMA averages roughly the last
    ``(1 + step) ** warmup_power`` steps (timm's ModelEmaV3 warm-up): power 3/4 reaches 0.999 after 10,000 steps,
    so a THUMOS14-length run (4,000 steps: 0.998 at its end) keeps almost the same horizon.
    """
    if warmup_power is None:
        return decay
    return min(decay, 1.0 - (1.0 + step) ** -warmup_power)


class ModelEMA:
    """``ema = d * ema + (1 - d) * weights`` after every step, d from :func:`ema_decay_at`; buffers are copied.

    The step count comes from the caller (the trainer's global step), so a resumed run continues the warm-up
    exactly without extra state.
    """

    def __init__(self, model: nn.Module, decay: float, warmup_power: Optional[float] = None):
        self.decay = decay
        self.warmup_power = warmup_power
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1.0 - ema_decay_at(step, self.decay, self.warmup_power)
        ema = list(self.module.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], weight)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
