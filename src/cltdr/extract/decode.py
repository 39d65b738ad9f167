"""Decoding a video with PyAV, resampled to a target frame rate by timestamps.

Dimension letters: n frames of a chunk, H x W the video's frame size (RGB, uint8).

Resampled frame ``k`` shows the instant ``k / fps`` (seconds from the first decoded frame): it is the source
frame on screen then, the last one whose timestamp is <= ``k / fps``. Frames are placed by their timestamps, not
counted, so a variable-frame-rate video (phones, screen recordings) is resampled as it plays. A video lasts
``D`` = the last frame's timestamp + its duration, and yields the ``F = floor(D * fps)`` frames whose whole
interval ``[k / fps, (k + 1) / fps)`` lies inside it; with an integer clip length and stride, the clips of
clips.py then number exactly :meth:`FeatureGrid.expected_steps` of ``D``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from cltdr.errors import DataError

# File endings taken as videos when a folder is given (and by `cltdr detect` to tell videos from features).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
_EPS = 1e-6  # seconds: timestamps are rationals printed as floats; an instant this close counts as reached


class VideoError(DataError):
    """A video that cannot be opened or decoded; the message names the file."""


def import_av() -> Any:
    """PyAV, or an error saying how to install it."""
    try:
        import av
    except ImportError:
        raise DataError("reading videos needs PyAV: pip install 'cltdr[video]' (or pip install av)") from None
    return av


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_videos(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Video files named or found in the folders named (their files with a video ending, sorted), in order."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and is_video(p))
            if not found:
                raise DataError(f"folder {item} holds no video file (endings {', '.join(VIDEO_SUFFIXES)})")
            out += found
        elif item.exists():
            out.append(item)
        else:
            raise DataError(f"video file not found: {item}")
    return out


@dataclass(frozen=True)
class VideoInfo:
    """What the container says before decoding (stated values: a truncated file may hold less)."""

    width: int
    height: int
    native_fps: float | None  # the stream's average frame rate, when stated
    stated_duration: float | None  # seconds, when stated


class Resampler:
    """Source frames with timestamps in, frames at ``fps`` out (see the module's docstring for the rule).

    Frames are emitted as soon as their interval is known to lie inside the video (before a later source frame's
    timestamp), so memory holds only the source frames since the last one emitted."""

    def __init__(self, fps: float):
        self.fps = fps
        self.next_k = 0  # the next resampled frame to emit
        self.times: list[float] = []  # timestamps of the buffered source frames (ascending)
        self.frames: list[np.ndarray] = []  # (H, W, 3) each

    def _emit(self, stop: int) -> np.ndarray | None:
        """Resampled frames ``next_k .. stop - 1`` (n, H, W, 3), dropping source frames no longer needed."""
        if stop <= self.next_k:
            return None
        instants = np.arange(self.next_k, stop) / self.fps  # (n,)
        src = np.searchsorted(np.asarray(self.times), instants + _EPS, side="right") - 1  # (n,) >= 0: t_0 = 0
        first, counts = int(src[0]), np.bincount(src - src[0])  # src ascends: run lengths of each source frame
        out = np.repeat(np.stack(self.frames[first : first + len(counts)]), counts, axis=0)
        last = int(src[-1])  # later instants cannot show an earlier frame than this one
        del self.times[:last], self.frames[:last]
        self.next_k = stop
        return out

    def push(self, time: float, frame: np.ndarray) -> np.ndarray | None:
        """One source frame shown from ``time`` on; the resampled frames this completes, if any."""
        if self.times and time <= self.times[-1]:
            if time == self.times[-1]:  # the same instant again: the later frame is the one on screen
                self.frames[-1] = frame
            return None  # an out-of-order timestamp: the frame is never shown
        self.times.append(time)
        self.frames.append(frame)
        return self._emit(math.floor(time * self.fps + _EPS))  # frames k with (k + 1) / fps <= time

    def finish(self, end: float) -> np.ndarray | None:
        """The remaining frames of a video ending at ``end`` seconds."""
        return self._emit(math.floor(end * self.fps + _EPS)) if self.frames else None


class VideoReader:
    """One video file, decoded once into chunks of RGB frames resampled to ``fps``.

    ``info`` is read at opening (errors: :class:`VideoError` naming the file); ``duration`` (seconds, the rule
    of the module docstring) and ``num_frames`` (resampled frames) are known once :meth:`chunks` is exhausted."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path, self.fps = Path(path), float(fps)
        self.duration: float | None = None
        self.num_frames = 0
        av = import_av()
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise VideoError(f"video {self.path}: the file holds no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate
                stated = stream.duration * stream.time_base if stream.duration and stream.time_base else None
                if stated is None and container.duration:
                    stated = container.duration / av.time_base
                self.info = VideoInfo(
                    stream.codec_context.width,
                    stream.codec_context.height,
                    float(rate) if rate else None,
                    float(stated) if stated else None,
                )
        except av.FFmpegError as err:
            raise VideoError(f"video {self.path} cannot be opened: {err}") from None

    def expected_frames(self) -> int | None:
        """Resampled frames the stated duration implies (for progress bars; the decoded count may differ)."""
        return None if self.info.stated_duration is None else math.floor(self.info.stated_duration * self.fps + _EPS)

    def chunks(self, size: int = 64) -> Iterator[np.ndarray]:
        """Resampled frames (n, H, W, 3) uint8, n <= about ``size`` (the last chunk holds what is left)."""
        av = import_av()
        resampler, pending, held = Resampler(self.fps), [], 0
        width, height = self.info.width, self.info.height
        origin = last = last_duration = None
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"  # frame-parallel decoding inside FFmpeg (not Python threads)
                for frame in container.decode(stream):
                    if frame.time is None:
                        continue  # no timestamp: cannot be placed in time
                    origin = frame.time if origin is None else origin
                    last = frame.time - origin
                    last_duration = _frame_duration(frame, stream)
                    # A fixed size even if the stream changes resolution mid-way (FFmpeg's scaler, once per frame).
                    image = frame.to_ndarray(format="rgb24", width=width, height=height)
                    out = resampler.push(last, image)
                    if out is not None:
                        pending.append(out)
                        held += len(out)
                    if held >= size:
                        yield from self._flush(pending)
                        pending, held = [], 0
        except av.FFmpegError as err:
            raise VideoError(f"video {self.path} is corrupt or truncated: decoding failed ({err})") from None
        if last is None:
            raise VideoError(f"video {self.path} has no decodable frame (empty, truncated or corrupt)")
        self.duration = last + (last_duration or 0.0)
        out = resampler.finish(self.duration)
        if out is not None:
            pending.append(out)
        yield from self._flush(pending)

    def _flush(self, pending: list[np.ndarray]) -> Iterator[np.ndarray]:
        if pending:
            chunk = np.concatenate(pending)
            self.num_frames += len(chunk)
            yield chunk


def _frame_duration(frame: Any, stream: Any) -> float | None:
    """Seconds ``frame`` stays on screen: its own duration when the container stores one, else 1 / frame rate."""
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return 1.0 / float(rate) if rate else None
