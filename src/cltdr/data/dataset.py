"""The TAL dataset (features + segments on the feature grid), its training crop, and dynamic-padding collate.

B batch, C channels, T feature steps, N segments of one video. Segments are in grid units (fractional feature
indices, see :mod:`cltdr.data.grid`); in training they are relative to the crop window.

Training randomness (crop, noise) comes from ``np.random.default_rng([seed, epoch, index])`` and nothing else,
so a resumed run that calls :meth:`TALDataset.set_epoch` sees exactly the same crops. DataLoader workers get a
copy of the dataset when they start: call ``set_epoch`` before iterating each epoch, and do not use
``persistent_workers=True`` (its workers would keep the first epoch).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from cltdr.data.annotations import VideoRecord
from cltdr.data.features import FeatureStore
from cltdr.data.grid import FeatureGrid

MAX_CROP_TRIALS = 200  # windows tried to find one that keeps an action (ActionFormer's number)


@dataclass
class VideoSample:
    """One video (or training crop). feats (C, T) float32 (None once collated); segments (N, 2) float32 grid units
    relative to the crop; labels (N,) int64; offset: first step of the crop within the video (0 at test)."""

    video_id: str
    feats: Tensor | None
    segments: Tensor
    labels: Tensor
    duration: float
    grid: FeatureGrid
    offset: int


class Crop(NamedTuple):
    """A training window ``[start, end)`` of feature steps and the segments (N', 2) / labels (N',) it keeps,
    in window coordinates."""

    start: int
    end: int
    segments: np.ndarray
    labels: np.ndarray


def random_crop(
    num_steps: int,
    segments: np.ndarray,
    labels: np.ndarray,
    *,
    max_seq_len: int,
    crop_ratio: tuple[float, float] | None,
    trunc_thresh: float,
    margin: float,
    rng: np.random.Generator,
    max_trials: int = MAX_CROP_TRIALS,
) -> Crop:
    """The ActionFormer / TriDet training crop.

    Window length: ``max_seq_len`` if the video is longer; else, with ``crop_ratio = (lo, hi)``, a length drawn
    uniformly from ``[max(round(lo*T), 1), min(round(hi*T), T)]``; else (or if that length is T) no crop.
    Then up to ``max_trials`` starts are drawn uniformly from ``[0, T - length]`` until one keeps an action.
    A segment (grid units) is kept when at least ``trunc_thresh`` of its length lies in the window
    ``[start - margin, end + margin]`` (``margin`` is half a feature's span, as in ActionFormer); kept segments
    are clipped to that window and shifted by ``-start``. Draw order (length, then starts) is part of the contract.
    """
    if num_steps > max_seq_len:
        length = max_seq_len
    elif crop_ratio is None:
        return Crop(0, num_steps, segments, labels)
    else:
        lo = max(round(crop_ratio[0] * num_steps), 1)
        hi = min(round(crop_ratio[1] * num_steps), num_steps)
        length = int(rng.integers(lo, hi + 1))
        if length == num_steps:
            return Crop(0, num_steps, segments, labels)
    seg_len = segments[:, 1] - segments[:, 0]  # (N,)
    for _ in range(max_trials if len(segments) else 1):
        start = int(rng.integers(0, num_steps - length + 1))
        left = np.maximum(segments[:, 0], start - margin)  # (N,)
        right = np.minimum(segments[:, 1], start + length + margin)  # (N,)
        keep = np.clip(right - left, 0.0, None) >= trunc_thresh * seg_len  # (N,)
        if keep.any():
            break
    kept = np.stack([left[keep], right[keep]], axis=1) - start  # (N', 2)
    return Crop(start, start + length, kept, labels[keep])


class TALDataset(torch.utils.data.Dataset):
    """Feature sequences and their segments on the feature grid.

    Training: random crop (:func:`random_crop`) and Gaussian input noise of std ``noise_std``. Test: the whole
    video, no noise. Features are read, validated and prepared (downsampled, resized) by ``store``
    (:class:`~cltdr.data.features.FeatureStore`) in ``__getitem__``, so a bad file raises a DataError naming it
    when it is reached; each video gets the grid of its prepared features.
    """

    def __init__(
        self,
        videos: list[VideoRecord],
        *,
        store: FeatureStore,
        training: bool,
        max_seq_len: int,
        crop_ratio: tuple[float, float] | None = None,
        trunc_thresh: float = 0.5,
        noise_std: float = 0.0,
        min_length: int = 1,
        min_length_reason: str | None = None,
        seed: int = 0,
    ) -> None:
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
        if crop_ratio is not None:
            crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
            if not 0.0 < crop_ratio[0] <= crop_ratio[1] <= 1.0:
                raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi <= 1, got {crop_ratio}")
        if not 0.0 <= trunc_thresh <= 1.0:
            raise ValueError(f"trunc_thresh must lie in [0, 1], got {trunc_thresh}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.videos = list(videos)
        self.store = store
        self.training, self.max_seq_len, self.crop_ratio = training, max_seq_len, crop_ratio
        self.trunc_thresh, self.noise_std = trunc_thresh, noise_std
        self.min_length, self.min_length_reason = min_length, min_length_reason
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and noise ``__getitem__`` draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> VideoSample:
        index = int(index)
        rec = self.videos[index]
        feats, grid = self.store.load(
            rec.video_id, rec.subset, rec.fps, min_length=self.min_length, min_length_reason=self.min_length_reason
        )  # (T, C)
        segments = grid.to_grid(np.asarray(rec.segments, dtype=np.float64))  # (N, 2)
        labels = np.asarray(rec.labels, dtype=np.int64)  # (N,)
        offset = 0
        if self.training:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            crop = random_crop(
                feats.shape[0],
                segments,
                labels,
                max_seq_len=self.max_seq_len,
                crop_ratio=self.crop_ratio,
                trunc_thresh=self.trunc_thresh,
                margin=0.5 * grid.num_frames / grid.feat_stride,
                rng=rng,
            )
            offset, segments, labels = crop.start, crop.segments, crop.labels
            feats = feats[crop.start : crop.end]
            if self.noise_std > 0:
                feats = feats + self.noise_std * rng.standard_normal(feats.shape, dtype=np.float32)
        return VideoSample(
            video_id=rec.video_id,
            feats=torch.from_numpy(np.ascontiguousarray(feats.T)),  # (C, T)
            segments=torch.from_numpy(segments.astype(np.float32).reshape(-1, 2)),
            labels=torch.from_numpy(labels.copy()),
            duration=rec.duration,
            grid=grid,
            offset=offset,
        )


@dataclass
class Batch:
    """feats (B, C, T) zero-padded; mask (B, T) True on valid steps; per-video segments (N_b, 2) and labels (N_b,);
    samples: the VideoSamples with their feats dropped."""

    feats: Tensor
    mask: Tensor
    segments: list[Tensor]
    labels: list[Tensor]
    samples: list[VideoSample]

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        return Batch(
            feats=fn(self.feats),
            mask=fn(self.mask),
            segments=[fn(s) for s in self.segments],
            labels=[fn(l) for l in self.labels],
            samples=self.samples,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``."""
        return self._map(lambda t: t.pin_memory())


def pad_features(feats: list[Tensor], divisor: int) -> tuple[Tensor, Tensor]:
    """[(C, T_b)] -> zero-padded (B, C, T) and its mask (B, T), T the longest T_b rounded up to ``divisor``."""
    lengths = [f.shape[1] for f in feats]
    padded_len = -(-max(lengths) // divisor) * divisor
    out = feats[0].new_zeros((len(feats), feats[0].shape[0], padded_len))  # (B, C, T)
    mask = torch.zeros((len(feats), padded_len), dtype=torch.bool, device=feats[0].device)  # (B, T)
    for b, (f, t) in enumerate(zip(feats, lengths)):
        out[b, :, :t] = f
        mask[b, :t] = True
    return out, mask


def collate(samples: list[VideoSample], divisor: int) -> Batch:
    """Stack samples, zero-padding to the longest one rounded up to a multiple of ``divisor`` (dynamic padding)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    feats_list = [s.feats for s in samples if s.feats is not None]
    if len(feats_list) != len(samples):
        raise ValueError("collate needs samples that still hold their features")
    channels = {f.shape[0] for f in feats_list}
    if len(channels) != 1:
        raise ValueError(f"samples have different channel counts {sorted(channels)}")
    feats, mask = pad_features(feats_list, divisor)
    return Batch(
        feats=feats,
        mask=mask,
        segments=[s.segments for s in samples],
        labels=[s.labels for s in samples],
        samples=[dataclasses.replace(s, feats=None) for s in samples],
    )


def make_collate(divisor: int) -> Callable[[list[VideoSample]], Batch]:
    """A picklable collate_fn for DataLoader workers."""
    return functools.partial(collate, divisor=divisor)
