"""Feature storage: how a dataset's clip features are stored, read and prepared for the model.

Dimension letters: T feature steps as stored, C channels (C_s of one stream), L steps after resizing.

Storage (one reader per format, chosen by extension in ``_READERS``):

* one file per video, ``<source>/<prefix><video_id><ext>``: ``.npy`` (memory-mapped), ``.npz``, ``.pt`` / ``.pth``
  (a tensor or a dict of tensors, loaded with ``weights_only``), ``.pkl`` / ``.pickle`` (an array, tensor or dict;
  unpickling runs code, so only for files you trust);
* or one HDF5 file for the whole dataset (``<source>`` ends in ``.h5`` / ``.hdf5`` or is a file), holding one
  dataset (or group) per video under the key ``<prefix><video_id>``.

A file may hold a mapping (npz, dict, HDF5 group): ``keys`` names the arrays to use, concatenated along the channels
(HACS SlowFast: ``slow_feature`` + ``fast_feature``). Arrays are stored ``(T, C)`` or, with ``layout="CT"``,
``(C, T)``; leading axes of size 1 are squeezed (``(1, C, T)`` -> ``(C, T)``). Several sources (e.g. an RGB and a
flow folder) are concatenated along the channels in order; ``{subset}`` in a source is replaced by the video's
subset as written in the annotation file (per-split folders). Every problem raises
:class:`~cltdr.errors.DataError` naming the video, the file and what was expected.

Preparation (:meth:`FeatureStore.prepare`): keep every ``downsample_rate``-th step (the stride grows by that
factor), then optionally resize linearly to ``resize_to`` steps (ActivityNet/HACS). A resized video gets its own
:class:`~cltdr.data.grid.FeatureGrid`: its T steps spanned frames ``[0, (T - 1) * stride + num_frames)``, which the
L new steps split evenly, so ``stride' = num_frames' = ((T - 1) * stride + num_frames) / L`` (ActionFormer/TriDet).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cltdr.data.grid import FeatureGrid
from cltdr.errors import DataError
from cltdr.utils.text import counted

HDF5_SUFFIXES = (".h5", ".hdf5")
LAYOUTS = ("TC", "CT")


class FeatureError(DataError):
    """A feature file that cannot be used; ``kind`` is one of :data:`FEATURE_PROBLEMS` (for reports)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


FEATURE_PROBLEMS = (
    "missing file",
    "unreadable file",
    "wrong shape",
    "wrong channels",
    "non-finite values",
    "too short",
)


def feature_path(feat_dir: str | os.PathLike, video_id: str, prefix: str = "", ext: str = ".npy") -> Path:
    """The feature file of one video: ``feat_dir / f"{prefix}{video_id}{ext}"``."""
    return Path(feat_dir) / f"{prefix}{video_id}{ext}"


# ------------------------------------------------------------------------------------------- readers
def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)  # the header now, the data when first touched


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _read_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _read_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


_READERS: dict[str, Callable[[Path], Any]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".pt": _read_torch,
    ".pth": _read_torch,
    ".pkl": _read_pickle,
    ".pickle": _read_pickle,
}


def _suffix(ext: str) -> str:
    """The format suffix of a file-name ending: ``"_spatial_feature.pt"`` -> ``".pt"``."""
    return Path(f"x{ext}").suffix.lower()


def is_hdf5(source: str | os.PathLike) -> bool:
    """Whether a source is one HDF5 file for all videos rather than a folder of per-video files."""
    source = Path(source)
    return source.suffix.lower() in HDF5_SUFFIXES or source.is_file()


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


def _read_file(path: Path, video_id: str) -> Any:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise FeatureError(
            "unreadable file",
            f"video {video_id!r}: feature file {path} has extension {path.suffix!r}; supported: "
            f"{sorted(_READERS)} (or one HDF5 file: {list(HDF5_SUFFIXES)})",
        )
    if not path.is_file():
        raise FeatureError("missing file", _missing_file_message(path, video_id))
    try:
        return reader(path)
    except Exception as e:  # any reader failure on a user file is a data problem
        raise FeatureError(
            "unreadable file", f"video {video_id!r}: feature file {path} could not be read ({type(e).__name__}: {e})"
        ) from e


def _read_hdf5(path: Path, key: str, video_id: str) -> Any:
    try:
        import h5py
    except ImportError:
        raise FeatureError(
            "unreadable file", f"feature file {path} is HDF5, which needs h5py: pip install 'cltdr[hdf5]'"
        ) from None
    if not path.is_file():
        raise FeatureError("missing file", f"video {video_id!r}: HDF5 feature file {path} not found (check feat_dir)")
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                names = list(f.keys())
                raise FeatureError(
                    "missing file",
                    f"video {video_id!r}: HDF5 feature file {path} has no entry {key!r} (it holds {len(names)} "
                    f"entries, e.g. {names[:3]}; check feat_prefix)",
                )
            node = f[key]
            return {k: node[k][()] for k in node} if isinstance(node, h5py.Group) else node[()]
    except DataError:
        raise
    except Exception as e:
        raise FeatureError(
            "unreadable file",
            f"video {video_id!r}: HDF5 feature file {path} could not be read ({type(e).__name__}: {e})",
        ) from e


def _as_array(obj: Any, where: str) -> np.ndarray:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return obj
    raise FeatureError("wrong shape", f"{where}: expected an array or tensor, got {type(obj).__name__}")


def _to_2d(array: np.ndarray, layout: str, where: str) -> np.ndarray:
    """Squeeze leading size-1 axes, then return (T, C_s) from a (T, C_s) or (C_s, T) array."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        want = "(T, C)" if layout == "TC" else "(C, T)"
        raise FeatureError("wrong shape", f"{where}: expected a 2-D array {want}, got shape {tuple(array.shape)}")
    return array.T if layout == "CT" else array


def _select(obj: Any, keys: Sequence[str] | None, layout: str, where: str) -> np.ndarray:
    """The (T, C_s) array of one stored object: the array itself, or its ``keys`` concatenated on channels."""
    if isinstance(obj, Mapping):
        names = list(obj)
        if keys is None:
            if len(names) != 1:
                raise FeatureError(
                    "wrong shape",
                    f"{where}: holds several arrays {names[:8]}; name the ones to use in dataset.feat_keys",
                )
            keys = names
        missing = [k for k in keys if k not in obj]
        if missing:
            raise FeatureError(
                "wrong shape", f"{where}: has no key {missing[0]!r} (dataset.feat_keys); it holds {names[:8]}"
            )
        parts = [_to_2d(_as_array(obj[k], f"{where}, key {k!r}"), layout, f"{where}, key {k!r}") for k in keys]
        return _concat(parts, [f"key {k!r}" for k in keys], where)
    if keys is not None:
        raise FeatureError(
            "wrong shape", f"{where}: holds one array, not a mapping with keys {list(keys)}; unset dataset.feat_keys"
        )
    return _to_2d(_as_array(obj, where), layout, where)


def _concat(parts: list[np.ndarray], names: list[str], where: str) -> np.ndarray:
    """Concatenate (T, C_s) parts along the channels; they must have the same T."""
    if len(parts) == 1:
        return parts[0]
    lengths = [p.shape[0] for p in parts]
    if len(set(lengths)) != 1:
        shown = ", ".join(f"{n}: {counted(t, 'step')}" for n, t in zip(names, lengths))
        raise FeatureError("wrong shape", f"{where}: the parts to concatenate have different lengths ({shown})")
    return np.concatenate([np.asarray(p) for p in parts], axis=1)


def _check_channels(num_steps: int, channels: int, input_dim: int, where: str) -> None:
    if channels != input_dim:
        hint = " (it looks transposed: set dataset.feat_layout)" if num_steps == input_dim else ""
        raise FeatureError(
            "wrong channels", f"{where}: expected (T, {input_dim}), got (T, {channels}) with T = {num_steps}{hint}"
        )


def _check_values(feats: np.ndarray, input_dim: int, where: str, first_step: int = 0) -> np.ndarray:
    """(T, C) -> contiguous float32, checking C == input_dim and that every value is finite; ``first_step``: the
    video step of row 0 (a window read from a longer video), so that errors give the video's step."""
    _check_channels(feats.shape[0], feats.shape[1], input_dim, where)
    try:  # into memory (a memory-mapped or read-only array is copied), contiguous float32
        feats = np.array(feats, dtype=np.float32, order="C", copy=not feats.flags.writeable or None)
    except (TypeError, ValueError) as e:
        raise FeatureError("unreadable file", f"{where}: values of dtype {feats.dtype} are not numbers") from e
    bad = ~np.isfinite(feats)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise FeatureError(
            "non-finite values",
            f"{where}: {counted(int(bad.sum()), 'NaN or inf value')} (after conversion to float32), the first at step "
            f"{first_step + t}, channel {c}",
        )
    return feats


def check_length(num_steps: int, min_length: int, reason: str | None, where: str) -> None:
    if num_steps < min_length:
        raise FeatureError(
            "too short",
            f"{where} has {counted(num_steps, 'step')}; {reason or 'the model'} needs at least "
            f"{counted(min_length, 'step')}",
        )


# ------------------------------------------------------------------------------------ reading by windows
Rows = Callable[[int, int], np.ndarray]  # (start, stop) -> the (stop - start, C_s) rows of one stored array


def _npy_rows(path: Path, video_id: str) -> tuple[int, int, Rows] | None:
    """A plain (T, C) C-ordered .npy file read by seeking to the rows asked for (no memory map, so a long video's
    pages never accumulate in the process): (T, C, rows), or None for any other layout (read another way)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if len(shape) != 2 or fortran or dtype.hasobject:
        return None
    T, C = shape
    expected, size = offset + T * C * dtype.itemsize, path.stat().st_size
    if size < expected:
        raise FeatureError(
            "unreadable file",
            f"video {video_id!r}: feature file {path} could not be read: corrupt or truncated (its header says "
            f"{T} x {C} values of {dtype}, {expected} bytes with the header; the file holds {size})",
        )

    def rows(start: int, stop: int) -> np.ndarray:
        with open(path, "rb") as f:
            f.seek(offset + start * C * dtype.itemsize)
            return np.fromfile(f, dtype=dtype, count=(stop - start) * C).reshape(stop - start, C)

    return T, C, rows


def _hdf5_rows(path: Path, key: str, layout: str) -> tuple[int, int, Rows] | None:
    """A plain 2-D HDF5 dataset sliced on read: (T, C, rows), or None for a group or another shape."""
    import h5py

    with h5py.File(path, "r") as f:
        node = f.get(key)
        if not isinstance(node, h5py.Dataset) or node.ndim != 2:
            return None
        T, C = node.shape if layout == "TC" else node.shape[::-1]

    def rows(start: int, stop: int) -> np.ndarray:
        with h5py.File(path, "r") as f:
            node = f[key]
            return node[start:stop] if layout == "TC" else node[:, start:stop].T

    return T, C, rows


@dataclass
class StoredFeatures:
    """One video's stored (T, C) features, read a window of steps at a time (:meth:`read`), so that an hours-long
    video never has to be in memory whole. ``.npy`` files and plain HDF5 datasets are read lazily; other formats
    are loaded once, then sliced. The channel count is checked when opened; values, window by window."""

    parts: list[Rows]  # one per source, concatenated on channels
    num_steps: int  # T
    input_dim: int  # C
    where: str  # the video and its file(s), as quoted in errors

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Stored steps [start, stop) as contiguous float32 (stop None: to the end), values checked."""
        stop = self.num_steps if stop is None else stop
        parts = [rows(start, stop) for rows in self.parts]
        window = parts[0] if len(parts) == 1 else np.concatenate([np.asarray(p) for p in parts], axis=1)
        where = self.where if (start, stop) == (0, self.num_steps) else f"{self.where}, steps {start}-{stop}"
        return _check_values(window, self.input_dim, where, first_step=start)

    @staticmethod
    def of_array(array: np.ndarray, input_dim: int, where: str) -> StoredFeatures:
        """Features already in memory, (T, C), read like a file's (channels checked now, values when read)."""
        if array.ndim != 2:
            raise FeatureError("wrong shape", f"{where}: expected a (T, {input_dim}) array, got shape {array.shape}")
        _check_channels(array.shape[0], array.shape[1], input_dim, where)
        return StoredFeatures([lambda start, stop: array[start:stop]], array.shape[0], input_dim, where)


def _open_source(
    path: Path, key: str | None, video_id: str, keys: Sequence[str] | None, layout: str, where: str
) -> tuple[int, int, Rows]:
    """(T, C_s, rows) of one source of a video: read lazily where the format allows, else loaded whole."""
    if keys is None and layout == "TC" and key is None and path.suffix.lower() == ".npy" and path.is_file():
        try:
            lazy = _npy_rows(path, video_id)
        except FeatureError:
            raise
        except Exception:  # not a readable .npy: the ordinary reader below says why
            lazy = None
        if lazy is not None:
            return lazy
    if keys is None and key is not None and path.is_file():
        try:
            lazy = _hdf5_rows(path, key, layout)
        except Exception:
            lazy = None
        if lazy is not None:
            return lazy
    obj = _read_file(path, video_id) if key is None else _read_hdf5(path, key, video_id)
    array = _select(obj, keys, layout, where)  # (T, C_s), possibly a memory map
    return array.shape[0], array.shape[1], lambda start, stop: array[start:stop]


def describe_locations(locations: Sequence[tuple[Path, str | None]]) -> str:
    """A video's feature sources (file, HDF5 key or None), as quoted in errors."""
    return " + ".join(str(p) if k is None else f"{p}[{k!r}]" for p, k in locations)


def open_features(
    locations: Sequence[tuple[Path, str | None]],
    *,
    video_id: str,
    input_dim: int,
    keys: Sequence[str] | None = None,
    layout: str = "TC",
    where: str | None = None,
) -> StoredFeatures:
    """Open a video's feature sources (file, HDF5 key or None), concatenated on channels, for reading by windows."""
    where = where or f"video {video_id!r}: feature file {describe_locations(locations)}"
    opened = []
    for path, key in locations:
        part_where = f"video {video_id!r}: feature file {path}" + (f", entry {key!r}" if key else "")
        opened.append(_open_source(Path(path), key, video_id, keys, layout, part_where))
    lengths = [T for T, _, _ in opened]
    if len(set(lengths)) != 1:
        shown = ", ".join(f"{p}: {counted(T, 'step')}" for (p, _), T in zip(locations, lengths))
        raise FeatureError("wrong shape", f"{where}: the parts to concatenate have different lengths ({shown})")
    channels = sum(C for _, C, _ in opened)
    if len(opened) > 1 and channels != input_dim:
        where += " (" + " + ".join(str(C) for _, C, _ in opened) + " channels)"
    _check_channels(lengths[0], channels, input_dim, where)
    return StoredFeatures([rows for _, _, rows in opened], lengths[0], input_dim, where)


def load_features(
    path: str | os.PathLike,
    *,
    video_id: str,
    input_dim: int,
    min_length: int = 1,
    min_length_reason: str | None = None,
    keys: Sequence[str] | None = None,
    layout: str = "TC",
) -> np.ndarray:
    """Load one per-video feature file as a (T, C) float32 array, checking C == input_dim, finite values and
    T >= min_length. ``min_length_reason``: what needs ``min_length`` steps, quoted in the error."""
    stored = open_features([(Path(path), None)], video_id=video_id, input_dim=input_dim, keys=keys, layout=layout)
    check_length(stored.num_steps, min_length, min_length_reason, stored.where)
    return stored.read()


# --------------------------------------------------------------------------------------- preparation
def resize_linear(feats: np.ndarray, length: int) -> np.ndarray:
    """(T, C) -> (L, C) by linear interpolation with half-pixel centres (``F.interpolate(mode="linear",
    align_corners=False)``): new step i samples old position ``(i + 0.5) * T / L - 0.5``, clamped to [0, T - 1]."""
    if feats.shape[0] == length:
        return feats
    x = torch.from_numpy(np.ascontiguousarray(feats.T))[None]  # (1, C, T)
    return F.interpolate(x, size=length, mode="linear", align_corners=False)[0].T.contiguous().numpy()  # (L, C)


def resized_grid(fps: float, feat_stride: float, num_frames: float, num_steps: int, length: int) -> FeatureGrid:
    """The grid of a video whose ``num_steps`` features (``feat_stride``, ``num_frames``) were resized to
    ``length`` steps: those features spanned ``(num_steps - 1) * feat_stride + num_frames`` frames, and each new
    step covers an equal share of them, centred on it."""
    span = ((num_steps - 1) * feat_stride + num_frames) / length
    return FeatureGrid(fps=fps, feat_stride=span, num_frames=span)


@dataclass(frozen=True)
class FeatureStore:
    """Where a dataset's features are and how they become the model's (T, C) input; see the module docstring.

    sources: folders of per-video files or HDF5 files (several: concatenated on channels), each may contain
    ``{subset}``. input_dim: total channels C. feat_stride / num_frames: the stored grid (frames between
    features, frames per feature). downsample_rate: keep every k-th step. resize_to: linear resize to this many
    steps (None: keep the length).
    """

    sources: tuple[Path, ...]
    input_dim: int
    feat_stride: float
    num_frames: float
    prefix: str = ""
    ext: str = ".npy"
    keys: tuple[str, ...] | None = None
    layout: str = "TC"
    downsample_rate: int = 1
    resize_to: int | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a FeatureStore needs at least one source")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.downsample_rate < 1 or (self.resize_to is not None and self.resize_to < 1):
            raise ValueError(
                f"downsample_rate and resize_to must be >= 1, got {self.downsample_rate}, {self.resize_to}"
            )
        if self.feat_stride <= 0 or self.num_frames <= 0:
            raise ValueError(f"feat_stride and num_frames must be positive, got {self.feat_stride}, {self.num_frames}")

    def locations(self, video_id: str, subset: str = "") -> list[tuple[Path, str | None]]:
        """Per source: (file, key inside an HDF5 file or None) holding this video's features."""
        out: list[tuple[Path, str | None]] = []
        for source in self.sources:
            source = Path(str(source).replace("{subset}", subset))
            if is_hdf5(source):
                out.append((source, f"{self.prefix}{video_id}"))
            else:
                out.append((feature_path(source, video_id, self.prefix, self.ext), None))
        return out

    def describe(self, video_id: str, subset: str = "") -> str:
        """The file(s) of a video, as quoted in errors."""
        return describe_locations(self.locations(video_id, subset))

    def open(self, video_id: str, subset: str = "") -> StoredFeatures:
        """A video's stored features (sources concatenated), for reading by windows; channels checked."""
        return open_features(
            self.locations(video_id, subset),
            video_id=video_id,
            input_dim=self.input_dim,
            keys=self.keys,
            layout=self.layout,
            where=f"video {video_id!r}: feature file {self.describe(video_id, subset)}",
        )

    def read(self, video_id: str, subset: str = "") -> np.ndarray:
        """The stored (T, C) float32 features of a video (sources concatenated), validated: C, finite values."""
        return self.open(video_id, subset).read()

    def prepared_length(self, num_steps: int) -> int:
        """Steps of the model's input for a video stored with ``num_steps`` steps."""
        if self.resize_to is not None:
            return self.resize_to
        return -(-num_steps // self.downsample_rate)

    def stored_grid(self, fps: float) -> FeatureGrid:
        """The grid of the stored features themselves (before downsampling or resizing)."""
        return FeatureGrid(fps=fps, feat_stride=self.feat_stride, num_frames=self.num_frames)

    def grid(self, fps: float, num_steps: int) -> FeatureGrid:
        """The grid of the model's input for a video stored with ``num_steps`` steps at ``fps``."""
        stride = self.feat_stride * self.downsample_rate
        if self.resize_to is None:
            return FeatureGrid(fps=fps, feat_stride=stride, num_frames=self.num_frames)
        kept = -(-num_steps // self.downsample_rate)  # steps left after downsampling
        return resized_grid(fps, stride, self.num_frames, kept, self.resize_to)

    def prepare(self, feats: np.ndarray, fps: float) -> tuple[np.ndarray, FeatureGrid]:
        """Stored (T, C) features -> the model's (T', C) input (downsampled, resized) and its grid."""
        grid = self.grid(fps, feats.shape[0])
        if self.downsample_rate > 1:
            feats = np.ascontiguousarray(feats[:: self.downsample_rate])
        if self.resize_to is not None:
            feats = resize_linear(feats, self.resize_to)
        return feats, grid

    def load(
        self, video_id: str, subset: str, fps: float, *, min_length: int = 1, min_length_reason: str | None = None
    ) -> tuple[np.ndarray, FeatureGrid]:
        """Read and prepare one video: its (T', C) float32 input and grid, with T' >= min_length."""
        feats, grid = self.prepare(self.read(video_id, subset), fps)
        where = f"video {video_id!r}: feature file {self.describe(video_id, subset)}"
        check_length(feats.shape[0], min_length, min_length_reason, where)
        return feats, grid
