"""The grid of clips (SPEC section 2): feature ``t`` covers frames ``[t * stride, t * stride + num_frames)``.

Dimension letters: C colour channels (3), n frames, h x w a frame after preprocessing, N frames of a clip
(``num_frames``), B clips of a batch.

Frames arrive in chunks as they are decoded; :class:`ClipBatcher` holds only the frames that clips still to come
need, and cuts batches of clips out of them as views (``unfold``), copying each frame once per clip it is in.
"""

from __future__ import annotations

from typing import Iterator

import torch


def num_clips(num_frames_total: int, num_frames: int, stride: int) -> int:
    """Clips of ``num_frames`` every ``stride`` frames that fit in ``num_frames_total`` frames (0 if none)."""
    return max((num_frames_total - num_frames) // stride + 1, 0)


def clip_frames(t: int, num_frames: int, stride: int) -> range:
    """The frame indices clip ``t`` covers."""
    return range(t * stride, t * stride + num_frames)


class ClipBatcher:
    """Frames (C, n, h, w) pushed in order -> batches of clips (B, C, N, h, w), in clip order."""

    def __init__(self, num_frames: int, stride: int, batch_size: int):
        self.num_frames, self.stride, self.batch_size = num_frames, stride, batch_size
        self.buffer: torch.Tensor | None = None  # (C, n, h, w): frames from self.offset on
        self.offset = 0  # index of the buffer's first frame in the video
        self.next_clip = 0  # the next clip to cut

    def push(self, frames: torch.Tensor) -> Iterator[torch.Tensor]:
        """Add frames (C, n, h, w); the full batches they complete."""
        self.buffer = frames if self.buffer is None else torch.cat([self.buffer, frames], dim=1)
        self._trim()
        while self._ready() >= self.batch_size:
            yield self._cut(self.batch_size)

    def finish(self) -> Iterator[torch.Tensor]:
        """The last, partial batch (if any clip is left)."""
        if self._ready():
            yield self._cut(self._ready())

    def _ready(self) -> int:
        """Clips from ``next_clip`` on whose frames are all in the buffer."""
        if self.buffer is None:
            return 0
        end = self.offset + self.buffer.shape[1]
        return max(num_clips(end, self.num_frames, self.stride) - self.next_clip, 0)

    def _cut(self, count: int) -> torch.Tensor:
        assert self.buffer is not None
        start = self.next_clip * self.stride - self.offset  # buffer index of the first clip's first frame
        span = (count - 1) * self.stride + self.num_frames
        window = self.buffer[:, start : start + span]  # (C, span, h, w)
        clips = window.unfold(1, self.num_frames, self.stride)  # (C, B, h, w, N), a view
        batch = clips.permute(1, 0, 4, 2, 3).contiguous()  # (B, C, N, h, w)
        self.next_clip += count
        self._trim()
        return batch

    def _trim(self) -> None:
        """Drop the frames before the next clip's first (with stride > num_frames, some never enter a clip)."""
        assert self.buffer is not None
        drop = min(self.next_clip * self.stride - self.offset, self.buffer.shape[1])
        if drop > 0:
            self.buffer = self.buffer[:, drop:]
            self.offset += drop
