"""Windowed inference: an hours-long video in overlapping windows, so that memory depends on the window only.

Shapes: T input steps of the video, W the window, O the overlap, C channels, N candidates.
A video of T <= W steps is one window and gives exactly the whole-video output. A longer one is cut into windows
of W steps that advance by W - O (the last one ends at T). Each window runs through the model alone; its pre-NMS
candidates (:func:`~cltdr.inference.postprocess.select_candidates`) move to video steps, and those cut by the
window's edge (starting before its first step + 1 or ending after its last step - 1, where the video goes on)
are dropped: an action no longer than the overlap lies whole in some window, where it is found uncut. One
Soft-NMS over the video's candidates then merges the windows (duplicates found by two windows decay, as the
duplicates found at several levels of one window do). The FFT branch, like any global context, sees one window.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from cltdr.inference.postprocess import Detections, PostprocessOptions, select_candidates, suppress

EDGE = 1.0  # steps: a candidate closer than this to a window's inner edge is taken as cut by it


def plan_windows(num_steps: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """The [start, stop) input steps of each window: one window when the video fits, else windows of ``window``
    steps advancing by ``window - overlap``, the last one ending at ``num_steps``."""
    if not 0 <= overlap < window:
        raise ValueError(f"window overlap must lie in [0, window), got window {window} and overlap {overlap}")
    if num_steps <= window:
        return [(0, num_steps)]
    stride = window - overlap
    starts = list(range(0, num_steps - window, stride)) + [num_steps - window]
    return [(a, a + window) for a in starts]


def uncut(segments: Tensor, start: int, stop: int, num_steps: int) -> Tensor:
    """(N,) which segments (N, 2), in video steps, the window [start, stop) saw whole: not reaching past an edge
    of the window behind which the video goes on."""
    left = segments[:, 0] >= start + EDGE if start > 0 else torch.ones_like(segments[:, 0], dtype=torch.bool)
    right = segments[:, 1] <= stop - 1 - EDGE if stop < num_steps else torch.ones_like(left)
    return left & right


@torch.no_grad()
def detect_windows(
    predict: Callable[[int, int], tuple[list[Tensor], list[Tensor]]],
    num_steps: int,
    opts: PostprocessOptions,
    *,
    window: int,
    overlap: int,
    progress: bool = False,
    desc: str = "windows",
) -> Detections:
    """A video's final detections in input steps. ``predict(start, stop)``: the model's per-level scores and
    segments (window steps) for input steps [start, stop) of the video (``runner.raw_predictions`` on them)."""
    spans = plan_windows(num_steps, window, overlap)  # one window (0, T): no edge is cut, no step moves
    parts = []
    for start, stop in tqdm(spans, desc=desc, disable=not progress or len(spans) == 1, leave=False, dynamic_ncols=True):
        cand = select_candidates(*predict(start, stop), opts)
        cand = Detections(cand.segments + start, cand.scores, cand.labels)
        parts.append(cand[uncut(cand.segments, start, stop, num_steps)])
    return suppress(Detections.cat(parts), opts)
