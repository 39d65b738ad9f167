"""Per-video feature files: ``<feat_dir>/<prefix><video_id><ext>``, stored as (T, C).

T feature steps, C channels. Loading validates the shape, the channel count and the values, and every
:class:`~cltdr.errors.DataError` names the video and the file. Readers are chosen by extension (``.npy`` now);
another format is one function added to ``_READERS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from cltdr.errors import DataError


def feature_path(feat_dir: str | os.PathLike, video_id: str, prefix: str = "", ext: str = ".npy") -> Path:
    """The feature file of one video: ``feat_dir / f"{prefix}{video_id}{ext}"``."""
    return Path(feat_dir) / f"{prefix}{video_id}{ext}"


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


_READERS: dict[str, Callable[[Path], np.ndarray]] = {".npy": _read_npy}


def _missing_file_message(path: Path, video_id: str) -> str:
    folder = path.parent
    msg = f"video {video_id!r}: feature file {path} not found (searched folder {folder} for {path.name!r})"
    if not folder.is_dir():
        return msg + f"; the folder {folder} does not exist (check feat_dir)"
    names = sorted(p.name for p in folder.iterdir())
    similar = [n for n in names if video_id in n][:3]
    if similar:
        return msg + f"; files there that mention this video: {similar} (check prefix and ext)"
    if names:
        return msg + f"; the folder holds {len(names)} files, e.g. {names[0]!r} (check feat_dir, prefix and ext)"
    return msg + "; the folder is empty"


def load_features(
    path: str | os.PathLike,
    *,
    video_id: str,
    input_dim: int,
    min_length: int = 1,
    min_length_reason: str | None = None,
) -> np.ndarray:
    """Load one video's features as a (T, C) float32 array, checking C == input_dim, finite values, T >= min_length.

    min_length_reason: what needs ``min_length`` steps, quoted in the error (e.g. "the 6-level pyramid").
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"video {video_id!r}: feature file {path} has extension {path.suffix!r}; supported: {sorted(_READERS)}"
        )
    if not path.is_file():
        raise DataError(_missing_file_message(path, video_id))
    try:
        feats = reader(path)
    except Exception as e:  # any reader failure on a user file is a data problem
        raise DataError(f"video {video_id!r}: feature file {path} could not be read ({type(e).__name__}: {e})") from e
    if not isinstance(feats, np.ndarray) or feats.ndim != 2:
        shape = getattr(feats, "shape", type(feats).__name__)
        raise DataError(f"video {video_id!r}: feature file {path}: expected a 2-D array (T, {input_dim}), got {shape}")
    if feats.shape[1] != input_dim:
        hint = " (it looks transposed: stored as (C, T)?)" if feats.shape[0] == input_dim else ""
        raise DataError(
            f"video {video_id!r}: feature file {path}: expected (T, {input_dim}), got (T, {feats.shape[1]}) "
            f"with T = {feats.shape[0]}{hint}"
        )
    try:
        feats = np.ascontiguousarray(feats, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(
            f"video {video_id!r}: feature file {path}: values of dtype {feats.dtype} are not numbers"
        ) from e
    bad = ~np.isfinite(feats)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise DataError(
            f"video {video_id!r}: feature file {path}: {int(bad.sum())} NaN or inf values (after conversion to "
            f"float32), the first at step {t}, channel {c}"
        )
    if feats.shape[0] < min_length:
        needs = min_length_reason or "the model"
        raise DataError(
            f"video {video_id!r}: feature file {path} has {feats.shape[0]} steps; {needs} needs at least "
            f"{min_length} steps"
        )
    return feats
