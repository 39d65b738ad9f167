"""The extraction driver: one video -> its features (T, C); a list of videos -> a folder of feature files.

Dimension letters: n frames of a decoded chunk, H x W its frames, h x w preprocessed frames, B clips of a batch,
N frames of a clip, T clips (features) of a video, C channels.

A video is decoded once (decode.py, resampled to ``fps``), each chunk of frames preprocessed once on the device
(resize, crop, normalise), cut into clips on the feature grid (clips.py) and run through the backbone in batches
of ``batch_size`` clips. A folder (:func:`extract_folder`) gets the feature card first, then one
``<video_id>.npy`` (T, C) float32 per video, each written atomically: a restarted run skips the files that
exist (a file being written when a run was killed is a ``.<name>.*.tmp`` temporary, removed, never taken for a
finished one). A video that cannot be read is reported and the others go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cltdr.errors import CheckpointError, ConfigError, DataError
from cltdr.extract.backbones import Backbone, build_backbone
from cltdr.extract.card import EXTRACTION_KEYS, FeatureCard, card_path, check_same, find_card, write_card
from cltdr.extract.clips import ClipBatcher, num_clips
from cltdr.extract.decode import VideoError, VideoReader, list_videos

DEFAULT_FPS = 30.0
DEFAULT_STRIDE = 4
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class ExtractSettings:
    """How clips are cut: frames resampled to ``fps``, ``num_frames`` per clip, a clip every ``stride`` frames;
    ``batch_size`` clips per backbone call. ``num_frames`` None: the backbone's usual clip length."""

    fps: float = DEFAULT_FPS
    num_frames: int | None = None
    stride: int = DEFAULT_STRIDE
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ConfigError(f"--fps {self.fps:g}: the frame rate to resample to must be > 0")
        for option, value in (("--num-frames", self.num_frames), ("--stride", self.stride)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{option} {value}: expected a whole number of frames >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: expected at least 1 clip per batch")

    @staticmethod
    def of_card(card: FeatureCard, batch_size: int = DEFAULT_BATCH_SIZE) -> ExtractSettings:
        return ExtractSettings(card.fps, card.num_frames, card.stride, batch_size)


def make_card(backbone: Backbone, settings: ExtractSettings, frame_size: tuple[int, int]) -> FeatureCard:
    """The card of features made by ``backbone`` with ``settings``; ``frame_size``: (h, w) of its input."""
    import cltdr

    return FeatureCard.model_validate(
        {
            "backbone": backbone.name,
            "weights": backbone.weights.to_json(),
            "fps": settings.fps,
            "num_frames": backbone.num_frames,
            "stride": settings.stride,
            "dim": backbone.dim,
            "frame_size": frame_size,
            "preprocessing": backbone.preprocess.describe(),
            "cltdr_version": cltdr.__version__,
            "torch_version": torch.__version__.split("+")[0],
        }
    )


def input_size(backbone: Backbone, device: torch.device) -> tuple[int, int]:
    """(h, w) of the backbone's input frames, from preprocessing a blank frame (the same for every video of a
    fixed-size preprocessing; the card records it)."""
    blank = torch.zeros(1, 240, 320, 3, dtype=torch.uint8, device=device)
    h, w = backbone.preprocess(blank).shape[-2:]
    return int(h), int(w)


def backbone_of_card(card: FeatureCard, where: str, weights: str | os.PathLike | None = None) -> Backbone:
    """The backbone that made the features of ``card`` (read from ``where``), rebuilt with the same weights: random
    ones from the recorded seed, a file or directory from its recorded path (or ``weights``, where it is now),
    pretrained ones from torchvision's cache. Refused when the weights' SHA-256 or the dimension differ."""
    recorded = card.weights
    if weights is None:
        weights = recorded.source if recorded.kind in ("file", "directory") else recorded.kind
    net = build_backbone(card.backbone, str(weights), card.num_frames)
    if net.weights.sha256 != recorded.sha256 or net.dim != card.dim:
        got, wanted = net.weights.source or net.weights.kind, recorded.source or recorded.kind
        raise CheckpointError(
            f"backbone {card.backbone}: the weights {got} (sha256 {net.weights.sha256[:16]}..., {net.dim} channels) "
            f"are not those of {where} ({wanted}, sha256 {recorded.sha256[:16]}..., {card.dim} channels); pass "
            "the weights the features were made with"
        )
    return net


@dataclass
class VideoFeatures:
    """One video's features and what decoding found."""

    features: np.ndarray  # (T, C) float32
    duration: float  # seconds (decode.py's rule)
    num_frames: int  # frames after resampling


@torch.inference_mode()
def extract_video(
    path: str | os.PathLike,
    backbone: Backbone,
    settings: ExtractSettings,
    device: torch.device,
    *,
    progress: bool = False,
) -> VideoFeatures:
    """The features (T, C) of one video, T = :func:`~cltdr.extract.clips.num_clips` of its resampled frames.
    Raises :class:`VideoError` naming the file when it cannot be decoded or is shorter than one clip."""
    N, s, B = backbone.num_frames, settings.stride, settings.batch_size
    reader = VideoReader(path, settings.fps)
    batcher = ClipBatcher(N, s, B)
    expected = reader.expected_frames()
    bar = tqdm(
        total=num_clips(expected, N, s) if expected is not None else None,
        desc=Path(path).name,
        unit="clip",
        leave=False,
        disable=not progress,
        dynamic_ncols=True,
    )
    outputs: list[torch.Tensor] = []

    def run(batch: torch.Tensor) -> None:  # (B, 3, N, h, w) -> (B, C)
        outputs.append(backbone.network(batch).float().cpu())
        bar.update(len(batch))

    with bar:
        # Chunks of at least one batch's worth of new frames, so that every backbone call is a full batch.
        for chunk in reader.chunks(size=max(64, B * s)):
            frames = backbone.preprocess(torch.from_numpy(chunk).to(device))  # (n, H, W, 3) -> (3, n, h, w)
            for batch in batcher.push(frames):
                run(batch)
        for batch in batcher.finish():
            run(batch)
    assert reader.duration is not None  # chunks() was exhausted
    T = num_clips(reader.num_frames, N, s)
    if T == 0:
        raise VideoError(
            f"video {path}: {reader.duration:.2f} s is {reader.num_frames} frames at {settings.fps:g} fps, shorter "
            f"than one clip of {N} frames; lower --num-frames or raise --fps"
        )
    features = torch.cat(outputs).numpy()
    assert features.shape == (T, backbone.dim), (features.shape, T, backbone.dim)
    return VideoFeatures(np.ascontiguousarray(features, dtype=np.float32), reader.duration, reader.num_frames)


@dataclass
class ExtractSummary:
    """What :func:`extract_folder` did, video by video."""

    card: FeatureCard
    written: list[tuple[Path, VideoFeatures]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # their feature file existed: done by an earlier run
    failed: list[tuple[Path, str]] = field(default_factory=list)  # the video and why


def extract_folder(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    backbone: str,
    weights: str | None = None,
    settings: ExtractSettings = ExtractSettings(),
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> ExtractSummary:
    """Extract every video of ``inputs`` (files, or folders of videos) into ``out_dir``: its card, then one
    ``<video_id>.npy`` per video (the video id is the file's stem). ``report`` gets one line per video."""
    from cltdr.api import check_video_ids
    from cltdr.data.features import feature_path
    from cltdr.utils.io import atomic_write, remove_stale_temporaries

    videos = list_videos(inputs)
    check_video_ids(videos)
    out_dir = Path(out_dir)
    net = build_backbone(backbone, weights, settings.num_frames).to(device)
    card = make_card(net, settings, input_size(net, device))
    existing = find_card(out_dir)
    if existing is not None:
        check_same(
            existing,
            str(card_path(out_dir)),
            card,
            "this extraction",
            keys=EXTRACTION_KEYS,
            hint=f"extract into another --out, or delete {out_dir} to start it over with these settings",
        )
    else:
        write_card(out_dir, card)  # before the first feature file: a folder with features always has its card
    remove_stale_temporaries(out_dir)  # files a killed run was writing
    summary = ExtractSummary(card)
    say = tqdm.write if progress else report
    for video in tqdm(videos, desc="videos", unit="video", disable=not progress, dynamic_ncols=True):
        out = feature_path(out_dir, video.stem, ext=card.ext)
        if out.exists():
            summary.skipped.append(video)
            continue
        try:
            found = extract_video(video, net, settings, device, progress=progress)
        except DataError as err:
            summary.failed.append((video, str(err)))
            say(f"error: {err}")
            continue
        atomic_write(out, lambda f: np.save(f, found.features), mode="wb")
        summary.written.append((video, found))
        T, C = found.features.shape
        say(f"{video.name}: {found.duration:.2f} s at {settings.fps:g} fps -> {out} ({T}, {C})")
    return summary
