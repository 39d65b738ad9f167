"""The one conversion between seconds and the feature grid.

Feature ``t`` covers frames ``[t * feat_stride, t * feat_stride + num_frames)``, so its centre lies at frame
``t * feat_stride + num_frames / 2``. A time in seconds maps to the (fractional) grid index whose centre it is:

    grid = (seconds * fps - 0.5 * num_frames) / feat_stride
    seconds = (grid * feat_stride + 0.5 * num_frames) / fps      (clipped to [0, duration])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = "np.ndarray | torch.Tensor | float"


@dataclass(frozen=True)
class FeatureGrid:
    """How a video's feature sequence samples its frames.

    fps: frames per second of the video. feat_stride: frames between consecutive features.
    num_frames: frames seen by one feature (the clip length of the backbone).
    """

    fps: float
    feat_stride: float
    num_frames: float

    def span_seconds(self, num_steps: int) -> float:
        """Seconds that ``num_steps`` stored features span: frames ``[0, (T - 1) * feat_stride + num_frames)``."""
        return ((num_steps - 1) * self.feat_stride + self.num_frames) / self.fps

    def expected_steps(self, duration: float) -> int:
        """Features a video of ``duration`` seconds yields: the inverse of :meth:`span_seconds`, floored."""
        return max(int(np.floor((duration * self.fps - self.num_frames) / self.feat_stride)) + 1, 0)

    def to_grid(self, seconds):
        """Seconds -> fractional feature index (not clipped: a caller decides what lies outside)."""
        return (seconds * self.fps - 0.5 * self.num_frames) / self.feat_stride

    def to_seconds(self, grid, duration: float | None = None):
        """Fractional feature index -> seconds, clipped to ``[0, duration]`` when a duration is given."""
        seconds = (grid * self.feat_stride + 0.5 * self.num_frames) / self.fps
        if duration is None:
            return seconds
        if isinstance(seconds, torch.Tensor):
            return seconds.clamp(0.0, float(duration))
        return np.clip(seconds, 0.0, float(duration))
