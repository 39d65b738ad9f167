"""A synthetic benchmark as video files: a few seconds of moving shapes, with visually distinct "actions".

``render(out_dir, preset, seed)`` writes ``out_dir/videos/<video_id>.mp4`` and ``out_dir/annotations.json``
(ActivityNet / ActionFormer layout, subsets ``training`` / ``testing``, segments in seconds). It feeds
``cltdr demo --video`` and the tests of ``cltdr extract``: the actions differ in colour, shape and motion, so
that even a randomly initialised backbone's features tell them apart.

Letters: F frames of a video, H x W a frame, K classes.

Every video: a dark, slowly moving noise texture and a white dot wandering over it (unlabelled motion); then
actions placed without overlap, each one of the :data:`CLASSES` for 2-5 s:

* ``red_square_slides``: a red square sliding from left to right;
* ``blue_disc_pulses``: a blue disc in the middle, growing and shrinking;
* ``green_bars_blink``: green horizontal bars blinking on and off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cltdr.data.synth import TEST_SUBSET, TRAIN_SUBSET
from cltdr.utils.io import atomic_write_json

CLASSES = ("red_square_slides", "blue_disc_pulses", "green_bars_blink")


@dataclass(frozen=True)
class VideoPreset:
    num_train_videos: int
    num_test_videos: int
    seconds: float  # length of every video
    fps: float  # frame rate of the files (extraction resamples it)
    size: int  # frames are size x size pixels
    actions: tuple[int, int]  # actions per video, inclusive range
    action_seconds: tuple[float, float]  # length of an action, uniform in this range


PRESETS = {
    "demo": VideoPreset(16, 6, 24.0, 15.0, 64, (2, 4), (2.0, 5.0)),
    "tiny": VideoPreset(6, 2, 8.0, 15.0, 32, (1, 2), (2.0, 3.0)),
}


@dataclass(frozen=True)
class RenderedVideos:
    root: Path
    video_dir: Path
    annotation_path: Path
    train_subset: str = TRAIN_SUBSET
    test_subset: str = TEST_SUBSET


def _place(rng: np.random.Generator, p: VideoPreset) -> list[tuple[int, float, float]]:
    """(class, start, end) of a video's actions: non-overlapping, at least 1 s apart, inside the video."""
    placed: list[tuple[int, float, float]] = []
    for _ in range(50):  # rejection sampling; a video keeps what fits
        if len(placed) >= rng.integers(p.actions[0], p.actions[1] + 1):
            break
        length = rng.uniform(*p.action_seconds)
        start = rng.uniform(0.5, p.seconds - length - 0.5)
        if all(start > e + 1.0 or start + length < s - 1.0 for _, s, e in placed):
            placed.append((int(rng.integers(len(CLASSES))), start, start + length))
    return sorted(placed, key=lambda a: a[1])


def render_video(rng: np.random.Generator, p: VideoPreset, actions: list[tuple[int, float, float]]) -> np.ndarray:
    """The frames (F, H, W, 3) uint8 of one video with ``actions`` (class, start s, end s)."""
    F, S = int(round(p.seconds * p.fps)), p.size
    t = np.arange(F) / p.fps  # (F,) seconds
    y, x = np.mgrid[0:S, 0:S] / S  # (H, W) in [0, 1)
    texture = rng.random((S, 2 * S))  # a noise strip the background slides along
    shift = (np.arange(F) * 0.5).astype(int) % S  # (F,) half a pixel a frame
    cols = (np.arange(S)[None, :] + shift[:, None]) % (2 * S)  # (F, W)
    background = 30 + 25 * texture[:, cols].transpose(1, 0, 2)  # (F, H, W)
    frames = np.repeat(background[..., None], 3, axis=-1)  # (F, H, W, 3)
    walk = 0.5 + 0.3 * np.stack([np.sin(t * 0.7 + rng.uniform(0, 6)), np.cos(t * 0.5 + rng.uniform(0, 6))], 1)
    dot = (np.abs(x[None] - walk[:, :1, None]) < 0.05) & (np.abs(y[None] - walk[:, 1:, None]) < 0.05)  # (F, H, W)
    frames[dot] = 230
    for k, start, end in actions:
        inside = (t >= start) & (t < end)
        phase = (t[inside] - start) / (end - start)  # (n,) 0 -> 1 over the action
        if k == 0:  # a red square sliding left to right
            cx = 0.15 + 0.7 * phase
            mask = (np.abs(x[None] - cx[:, None, None]) < 0.12) & (np.abs(y[None] - 0.5) < 0.12)
            color = (220, 40, 40)
        elif k == 1:  # a blue disc pulsing
            radius = 0.12 + 0.15 * np.abs(np.sin(np.pi * 2 * phase * (end - start) / 2))
            mask = (x[None] - 0.5) ** 2 + (y[None] - 0.5) ** 2 < radius[:, None, None] ** 2
            color = (40, 60, 230)
        else:  # green bars blinking at 2.5 Hz
            on = (np.floor((t[inside] - start) * 5) % 2 == 0)[:, None, None]
            mask = on & ((np.floor(y * 8) % 2 == 0)[None])
            color = (40, 210, 60)
        segment = frames[inside]
        segment[mask] = color
        frames[inside] = segment
    return np.clip(frames, 0, 255).astype(np.uint8)


def render(out_dir: str | os.PathLike, preset: str = "demo", seed: int = 0) -> RenderedVideos:
    """Write the preset's videos and their annotation file (the annotation last: it names only written videos)."""
    from cltdr.extract.encode import write_video

    p = PRESETS[preset]
    root = Path(out_dir)
    videos = root / "videos"
    rng = np.random.default_rng(seed)
    database = {}
    for subset, count in ((TRAIN_SUBSET, p.num_train_videos), (TEST_SUBSET, p.num_test_videos)):
        for i in range(count):
            video_id = f"video_{subset}_{i:03d}"
            actions = _place(rng, p)
            write_video(videos / f"{video_id}.mp4", render_video(rng, p, actions), p.fps, bit_rate=400_000)
            database[video_id] = {
                "subset": subset,
                "duration": p.seconds,
                "fps": p.fps,
                "annotations": [
                    {"label": CLASSES[k], "label_id": k, "segment": [round(s, 2), round(e, 2)]} for k, s, e in actions
                ],
            }
    annotation = atomic_write_json(root / "annotations.json", {"database": database})
    return RenderedVideos(root, videos, annotation)
