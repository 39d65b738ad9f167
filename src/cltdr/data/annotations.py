"""Annotation files in the ActivityNet / ActionFormer layout, loaded and validated.

The file is ``{"database": {video_id: {"subset": str, "duration": s, "fps": f,
"annotations": [{"label": name, "label_id": int, "segment": [start_s, end_s]}]}}}``.
Every problem a user can cause raises :class:`~cltdr.errors.DataError` naming the file, the video and what was
expected. Shapes: N segments of one video.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cltdr.errors import DataError
from cltdr.utils.io import read_json
from cltdr.utils.text import counted

SEGMENT_POLICIES = ("error", "clip", "drop")
BOUNDARY_TOL = 1e-3  # seconds a segment may stick out of [0, duration] before the policy applies


@dataclass(frozen=True, eq=False)
class VideoRecord:
    """One annotated video. ``segments`` (N, 2) float64 seconds with start < end, inside [0, duration];
    ``labels`` (N,) int64 indices into the class names. Both arrays are read-only."""

    video_id: str
    subset: str
    duration: float
    fps: float
    segments: np.ndarray
    labels: np.ndarray


@dataclass
class AnnotationSet:
    """The videos of the requested subsets, in file order, and the class names their labels index."""

    videos: list[VideoRecord]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def only(self, video_id: str, where: str) -> AnnotationSet:
        """The set holding just ``video_id``; ``where`` names this set (subset and file) in the error."""
        record = next((v for v in self.videos if v.video_id == video_id), None)
        if record is None:
            known = [v.video_id for v in self.videos[:5]]
            raise DataError(f"video {video_id!r} is not in {where}; its videos include {known}")
        return AnnotationSet([record], self.class_names)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _read_database(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Parse the file and return its non-empty ``database`` mapping."""
    path = Path(path)
    shape = 'a JSON object with a "database" mapping {video_id: {subset, duration, fps, annotations}}'
    data = read_json(path, "annotation", shape=shape)
    if not isinstance(data.get("database"), dict):
        raise DataError(f"annotation file {path}: expected {shape}, found top-level keys {sorted(data)}")
    database = data["database"]
    if not database:
        raise DataError(f'annotation file {path}: "database" is empty (no videos)')
    for video_id, entry in database.items():
        if not isinstance(entry, dict):
            raise DataError(
                f"annotation file {path}, video {video_id!r}: expected an object, got {type(entry).__name__}"
            )
        if not isinstance(entry.get("subset"), str):
            raise DataError(
                f'annotation file {path}, video {video_id!r}: expected a string "subset", got {entry.get("subset")!r}'
            )
        annotations = entry.get("annotations")
        if "annotations" not in entry:
            raise DataError(f'annotation file {path}, video {video_id!r}: missing key "annotations" (a list)')
        if not isinstance(annotations, list):
            raise DataError(
                f'annotation file {path}, video {video_id!r}: "annotations" must be a list, '
                f"got {type(annotations).__name__}"
            )
        for i, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                raise DataError(
                    f"annotation file {path}, video {video_id!r}, annotation {i}: expected an object "
                    f'{{"label", "segment"}}, got {type(ann).__name__}'
                )
            if not isinstance(ann.get("label"), str):
                raise DataError(
                    f'annotation file {path}, video {video_id!r}, annotation {i}: expected a string "label", '
                    f"got {ann.get('label')!r}"
                )
    return path, database


def _class_names_from_database(path: Path, database: dict[str, Any]) -> list[str]:
    """Class names in ``label_id`` order over the whole file (alphabetical when no label has an id)."""
    id_of: dict[str, tuple[int, str]] = {}  # label -> (label_id, first video with it)
    label_of: dict[int, tuple[str, str]] = {}  # label_id -> (label, first video with it)
    labels: dict[str, str] = {}  # label -> first video with it
    for video_id, entry in database.items():
        for i, ann in enumerate(entry["annotations"]):
            label = ann["label"]
            labels.setdefault(label, video_id)
            if ann.get("label_id") is None:
                continue
            lid = ann["label_id"]
            if not (_is_number(lid) and float(lid).is_integer()):
                raise DataError(
                    f"annotation file {path}, video {video_id!r}, annotation {i}: label_id must be an integer, "
                    f"got {lid!r}"
                )
            lid = int(lid)
            prev_id, prev_video = id_of.setdefault(label, (lid, video_id))
            if prev_id != lid:
                raise DataError(
                    f"annotation file {path}: label {label!r} has label_id {prev_id} in video {prev_video!r} "
                    f"but {lid} in video {video_id!r}"
                )
            prev_label, prev_video = label_of.setdefault(lid, (label, video_id))
            if prev_label != label:
                raise DataError(
                    f"annotation file {path}: label_id {lid} is {prev_label!r} in video {prev_video!r} "
                    f"but {label!r} in video {video_id!r}"
                )
    if not id_of:
        return sorted(labels)
    missing = sorted(set(labels) - set(id_of))
    if missing:
        raise DataError(
            f"annotation file {path}: labels {missing} never have a label_id while other labels do "
            f"(e.g. in video {labels[missing[0]]!r}); give every label an id or none"
        )
    return [label for _, label in sorted((lid, label) for label, (lid, _) in id_of.items())]


def read_class_names(path: str | Path) -> list[str]:
    """Class names of an annotation file, in ``label_id`` order across all subsets (alphabetical without ids)."""
    path, database = _read_database(path)
    return _class_names_from_database(path, database)


def _positive_number(value: Any, what: str, where: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise DataError(f"{where}: {what} must be a positive number, got {value!r}")
    return float(value)


def _parse_video(
    path: Path, video_id: str, entry: dict[str, Any], index_of: dict[str, int], default_fps: float | None
) -> tuple[str, float, float, list[list[float]], list[int]]:
    where = f"annotation file {path}, video {video_id!r}"
    if "duration" not in entry:
        raise DataError(f'{where}: missing key "duration" (seconds)')
    duration = _positive_number(entry["duration"], "duration (seconds)", where)
    if entry.get("fps") is None:
        if default_fps is None:
            raise DataError(f'{where}: no "fps" and no default_fps was given')
        fps = default_fps
    else:
        fps = _positive_number(entry["fps"], "fps", where)
    segments, labels = [], []
    for i, ann in enumerate(entry["annotations"]):
        seg = ann.get("segment")
        if not (
            isinstance(seg, (list, tuple)) and len(seg) == 2 and all(_is_number(x) and math.isfinite(x) for x in seg)
        ):
            raise DataError(f'{where}, annotation {i}: "segment" must be two finite numbers [start, end], got {seg!r}')
        start, end = float(seg[0]), float(seg[1])
        if end <= start:
            raise DataError(f"{where}, annotation {i}: segment {seg!r} has end <= start")
        label = ann["label"]
        if label not in index_of:
            raise DataError(f"{where}, annotation {i}: label {label!r} is not a known class; known: {list(index_of)}")
        segments.append([start, end])
        labels.append(index_of[label])
    return entry["subset"], duration, fps, segments, labels


def load_annotations(
    path: str | Path,
    *,
    subsets: Sequence[str],
    class_names: Sequence[str] | None = None,
    default_fps: float | None = None,
    segment_policy: str = "error",
) -> AnnotationSet:
    """Load and validate the videos of ``subsets`` (case-insensitive) from an annotation file.

    class_names: the label order; by default :func:`read_class_names` of the same file.
    default_fps: used for videos without ``fps``. segment_policy: what to do with a segment reaching outside
    ``[0, duration]`` by more than 1e-3 s: ``"error"`` raises, ``"clip"`` clips it into the video (dropping it if
    nothing is left), ``"drop"`` drops it; the latter two warn once with a summary. Segments within the
    tolerance are clipped silently.
    """
    if segment_policy not in SEGMENT_POLICIES:
        raise ValueError(f"segment_policy must be one of {SEGMENT_POLICIES}, got {segment_policy!r}")
    if isinstance(subsets, str):
        subsets = [subsets]
    path, database = _read_database(path)
    if default_fps is not None:
        default_fps = _positive_number(default_fps, "default_fps", f"loading {path}")
    if class_names is None:
        class_names = _class_names_from_database(path, database)
    class_names = list(class_names)
    index_of = {name: i for i, name in enumerate(class_names)}

    wanted = {s.lower() for s in subsets}
    videos: list[VideoRecord] = []
    outside: list[tuple[str, list[float], float]] = []  # (video, segment, duration)
    changed_videos: set[str] = set()
    for video_id, entry in database.items():
        if entry["subset"].lower() not in wanted:
            continue
        subset, duration, fps, segments, labels = _parse_video(path, video_id, entry, index_of, default_fps)
        kept_segments, kept_labels = [], []
        for (start, end), label in zip(segments, labels):
            if start < -BOUNDARY_TOL or end > duration + BOUNDARY_TOL:
                outside.append((video_id, [start, end], duration))
                changed_videos.add(video_id)
                if segment_policy != "clip":
                    continue
            start, end = max(start, 0.0), min(end, duration)
            if end > start:
                kept_segments.append([start, end])
                kept_labels.append(label)
        seg_arr = np.asarray(kept_segments, dtype=np.float64).reshape(-1, 2)
        lab_arr = np.asarray(kept_labels, dtype=np.int64)
        seg_arr.setflags(write=False)
        lab_arr.setflags(write=False)
        videos.append(VideoRecord(video_id, subset, duration, fps, seg_arr, lab_arr))

    if not videos:
        counts: dict[str, int] = {}
        for entry in database.values():
            counts[entry["subset"]] = counts.get(entry["subset"], 0) + 1
        raise DataError(
            f"annotation file {path}: no video in subsets {list(subsets)}; the file has subsets "
            + ", ".join(f"{name!r} ({counted(n, 'video')})" for name, n in sorted(counts.items()))
        )
    if outside:
        video_id, seg, duration = outside[0]
        example = f"e.g. video {video_id!r} segment {seg} with duration {duration}"
        if segment_policy == "error":
            raise DataError(
                f"annotation file {path}: {len(outside)} segments in {len(changed_videos)} videos lie outside "
                f"[0, duration]; {example}. Pass segment_policy='clip' or 'drop' to accept the file"
            )
        action = "clipped into the video" if segment_policy == "clip" else "dropped"
        warnings.warn(
            f"annotation file {path}: {len(outside)} segments in {len(changed_videos)} videos lie outside "
            f"[0, duration] and were {action} (segment_policy={segment_policy!r}); {example}",
            stacklevel=2,
        )
    return AnnotationSet(videos=videos, class_names=class_names)
