"""The evaluation protocol of each benchmark (SPEC section 3): tIoU thresholds, the columns a paper reports,
and the DETAD bin edges its diagnosis uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Protocol:
    thresholds: tuple[float, ...]  # tIoU thresholds of the mAP (its average covers all of them)
    reported: tuple[float, ...] | None  # thresholds shown in the table (None: all)
    bins: str  # key of cltdr.evaluation.diagnosis.CHARACTERISTIC_BINS


_ANET = Protocol(tuple(np.linspace(0.5, 0.95, 10)), (0.5, 0.75, 0.95), "activitynet")  # as ActivityNet's code
PROTOCOLS: dict[str, Protocol] = {
    "thumos14": Protocol((0.3, 0.4, 0.5, 0.6, 0.7), None, "thumos14"),
    "multithumos": Protocol((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), None, "thumos14"),
    "epic": Protocol((0.1, 0.2, 0.3, 0.4, 0.5), None, "thumos14"),
    "anet": _ANET,
    "hacs": _ANET,
}
DEFAULT_PROTOCOL = "thumos14"  # what the commands use when neither --dataset nor --tiou is given


def thresholds_for(dataset: str | None, tiou: Sequence[float] | None) -> list[float]:
    """The thresholds given explicitly, else those of ``dataset``, else THUMOS14's."""
    if tiou:
        return [float(t) for t in tiou]
    return [float(t) for t in PROTOCOLS[dataset or DEFAULT_PROTOCOL].thresholds]


def protocol_of(thresholds: Sequence[float]) -> str | None:
    """The first benchmark whose protocol has exactly these thresholds (in order), or None."""
    return next(
        (
            name
            for name, p in PROTOCOLS.items()
            if len(p.thresholds) == len(thresholds) and all(abs(a - b) < 1e-9 for a, b in zip(p.thresholds, thresholds))
        ),
        None,
    )
