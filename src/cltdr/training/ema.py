"""Exponential moving average of a model's weights, used for evaluation."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """The decay used by the ``step``-th update (0-based): ``min(decay, (1 + step) / (10 + step))`` with the
    warm-up (TensorFlow's ExponentialMovingAverage with num_updates), ``decay`` without.

    Without a warm-up a decay of 0.999 still gives the initial weights 0.999^n of the average after n steps
    (61% after 500 steps: a small dataset's whole schedule). With it the EMA averages about the last
    1 / (1 - d) = (10 + n) / 9 steps, a ninth of the run so far, until that reaches 1 / (1 - decay) (0.999:
    after 8,991 steps); a THUMOS14-length run (4,000 steps) ends at 0.9978, averaging its last ~445 steps.
    """
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class ModelEMA:
    """``ema = d * ema + (1 - d) * weights`` after every step, d from :func:`ema_decay_at`; buffers are copied.

    The step count comes from the caller (the trainer's global step), so a resumed run continues the warm-up
    exactly without extra state.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1.0 - ema_decay_at(step, self.decay, self.warmup)
        ema: list[torch.Tensor] = list(self.module.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], weight)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
