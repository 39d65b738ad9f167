"""Helpers of the video tests: tiny videos whose pixels say which frame they are, and the pass-through backbone
that reads them back (a test device, registered under the name ``frame-index``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")  # noqa: F841  (PyAV: the `video` extra, part of `test`)

from cltdr.extract.backbones import Backbone, BackboneSpec, WeightsInfo, register_backbone  # noqa: E402
from cltdr.extract.encode import write_video  # noqa: E402


def index_frames(count: int, height: int = 16, width: int = 24) -> np.ndarray:
    """(F, H, W, 3) frames whose red value is the frame index mod 256 and green value the index // 256."""
    i = np.arange(count)
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 0] = (i % 256)[:, None, None]
    frames[..., 1] = (i // 256)[:, None, None]
    return frames


def index_video(path: Path, count: int, fps: float, times: np.ndarray | None = None, **size: int) -> Path:
    """A lossless (FFV1) video of :func:`index_frames`; ``times``: timestamps of a variable frame rate."""
    return write_video(
        path, index_frames(count, **size), fps, codec="ffv1", times=None if times is None else list(times)
    )


def moving_video(path: Path, seconds: float, fps: float, height: int, width: int, seed: int = 0) -> Path:
    """A lossy (MPEG-4) video of a bright square moving over noise."""
    rng = np.random.default_rng(seed)
    count = int(round(seconds * fps))
    frames = (rng.random((count, height, width, 3)) * 60).astype(np.uint8)
    for i in range(count):
        x = int(i * (width - 8) / max(count - 1, 1))
        frames[i, height // 4 : height // 4 + 8, x : x + 8] = 220
    return write_video(path, frames, fps)


class Identity:
    """Preprocessing that keeps frames as decoded: (n, H, W, 3) uint8 -> (3, n, H, W) float, pixel values kept."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.permute(3, 0, 1, 2).float()

    def describe(self) -> dict[str, Any]:
        return {"identity": True}


class FrameIndex(torch.nn.Module):
    """Clips (B, 3, N, H, W) of :func:`index_frames` -> the index of each of their frames (B, N)."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        pixels = clips.mean(dim=(3, 4))  # (B, 3, N), one value per frame and channel: the frame is uniform
        return pixels[:, 0] + 256 * pixels[:, 1]


def _frame_index(weights: str, num_frames: int | None) -> Backbone:
    n = num_frames or 4
    return Backbone("frame-index", FrameIndex(), Identity(), n, WeightsInfo("random", None, "none", 0), n)


register_backbone("frame-index", BackboneSpec(_frame_index, needs="nothing (a test device)", default_weights="random"))
