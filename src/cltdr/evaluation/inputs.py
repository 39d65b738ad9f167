"""Reading and checking evaluation inputs: annotation and result files, as validated arrays.

Dimension letters: V videos of the evaluated subset, G cleaned ground-truth instances, K classes, N predictions.
Every problem a user can cause raises :class:`~cltdr.errors.DataError` naming the file, video and entry.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, TypeGuard

import numpy as np

from cltdr.errors import DataError
from cltdr.utils.text import counted

MIN_SEGMENT_S = 1e-3  # ground-truth segments shorter than this are dropped
DUPLICATE_TOL_S = 1e-3  # same label and both boundaries this close to a kept segment: duplicate, dropped

_PREDICTION_FORMAT = "{'label': str, 'score': finite number, 'segment': [start, end] with start <= end}"


def result_file(results: Mapping[str, list[dict]]) -> dict:
    """A prediction file in the ActivityNet result format: ``{"version", "results": {video: [entries]},
    "external_data"}``, as every command of cltdr writes it."""
    return {"version": "cltdr", "results": results, "external_data": {}}


def validate_predictions(obj: Mapping, source: str, require_label: bool = True) -> None:
    """Raise :class:`DataError` naming the video and entry of the first malformed detection.

    ``obj`` is an ActivityNet result object ``{"results": {video: [detection, ...]}}`` or its inner mapping.
    Without ``require_label`` (class-agnostic proposals) an entry may leave out its label.
    """
    results = results_of(obj, source)
    required = ("label", "score", "segment") if require_label else ("score", "segment")
    for video, entries in results.items():
        if not isinstance(entries, list):
            raise DataError(f"{source}: video {video!r}: expected a list of detections, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            where = f"{source}: video {video!r}, entry {i}"
            if not isinstance(entry, dict):
                raise DataError(f"{where}: expected an object {_PREDICTION_FORMAT}, got {entry!r}")
            missing = [key for key in required if key not in entry]
            if missing:
                raise DataError(f"{where}: missing {', '.join(missing)}; expected {_PREDICTION_FORMAT}")
            label, score, segment = entry.get("label", ""), entry["score"], entry["segment"]
            if not isinstance(label, str):
                raise DataError(f"{where}: label {label!r} is not a string (class names are expected)")
            if not is_finite_number(score):
                raise DataError(f"{where}: score {score!r} is not a finite number")
            if not (isinstance(segment, (list, tuple)) and len(segment) == 2 and all(map(is_finite_number, segment))):
                raise DataError(f"{where}: segment {segment!r} is not [start, end] with finite numbers")
            if segment[1] < segment[0]:
                raise DataError(f"{where}: segment {segment!r} ends before it starts")


def clean_ground_truth(database: Mapping, subset: str) -> dict[str, list[tuple[float, float, str]]]:
    """video id -> [(start, end, label)] for the videos of ``subset`` (case-insensitive), in file order.

    Drops segments shorter than ``MIN_SEGMENT_S`` and duplicates: same label and both boundaries within
    ``DUPLICATE_TOL_S`` of a segment kept earlier in the same video. Accepts the whole annotation object or
    its ``"database"`` mapping.
    """
    cleaned: dict[str, list[tuple[float, float, str]]] = {}
    for video, info in subset_videos(database, subset).items():
        kept: list[tuple[float, float, str]] = []
        for i, ann in enumerate(info.get("annotations", [])):
            start, end, label = _parse_annotation(ann, f"ground truth: video {video!r}, annotation {i}")
            if end - start < MIN_SEGMENT_S:
                continue
            if any(
                lab == label and abs(s - start) <= DUPLICATE_TOL_S and abs(e - end) <= DUPLICATE_TOL_S
                for s, e, lab in kept
            ):
                continue
            kept.append((start, end, label))
        cleaned[video] = kept
    return cleaned


def subset_videos(database: Mapping, subset: str) -> dict[str, dict]:
    """The entries of the videos of ``subset`` (compared case-insensitively), in file order."""
    wanted = subset.lower()
    out = {}
    for video, info in database_of(database).items():
        if not isinstance(info, dict) or not isinstance(info.get("subset"), str):
            raise DataError(f"ground truth: video {video!r} has no 'subset' string (e.g. 'Test', 'validation')")
        if info["subset"].lower() == wanted:
            out[video] = info
    return out


@dataclass
class GroundTruth:
    """The cleaned ground truth of one subset as arrays, instances in file order.

    ``class_names`` are the classes of the cleaned ground truth, sorted by name; ``videos`` every video of the
    subset (annotated or not), in file order.
    """

    videos: list[str]  # (V,)
    class_names: list[str]  # (K,)
    segments: np.ndarray  # (G, 2) seconds
    labels: np.ndarray  # (G,) int64 index into class_names
    video: np.ndarray  # (G,) int64 index into videos
    durations: np.ndarray  # (V,) seconds, NaN where the file gives none

    @classmethod
    def from_annotations(cls, ground_truth: Mapping, subset: str) -> GroundTruth:
        """``ground_truth``: ``{"database": {video: {"subset", "duration", "annotations": [...]}}}`` or the inner
        mapping. Raises :class:`DataError` when the subset holds no annotated video."""
        gt = clean_ground_truth(ground_truth, subset)
        class_names = sorted({label for segments in gt.values() for _, _, label in segments})
        if not class_names:
            subsets = sorted({str(v.get("subset")) for v in database_of(ground_truth).values() if isinstance(v, dict)})
            raise DataError(f"ground truth has no annotated video in subset {subset!r}; subsets present: {subsets}")
        index = {name: k for k, name in enumerate(class_names)}
        entries = subset_videos(ground_truth, subset)
        durations = [entries[v].get("duration") for v in gt]
        return cls(
            videos=list(gt),
            class_names=class_names,
            segments=np.array([(s, e) for segs in gt.values() for s, e, _ in segs], dtype=float).reshape(-1, 2),
            labels=np.array([index[lab] for segs in gt.values() for _, _, lab in segs], dtype=np.int64),
            video=np.array([v for v, segs in enumerate(gt.values()) for _ in segs], dtype=np.int64),
            durations=np.array([float(d) if is_finite_number(d) else math.nan for d in durations]),
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_per_class(self) -> np.ndarray:
        """(K,) instances per class."""
        return np.bincount(self.labels, minlength=self.num_classes)


@dataclass
class Predictions:
    """Detections as arrays, in file order; ``labels`` and ``video`` index the :class:`GroundTruth` they were
    read against, -1 where the label is not a ground-truth class (or absent) or the video not in the subset."""

    segments: np.ndarray  # (N, 2) seconds
    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) int64
    video: np.ndarray  # (N,) int64

    @classmethod
    def from_results(cls, obj: Mapping, gt: GroundTruth, source: str, require_label: bool = True) -> Predictions:
        """``obj``: ``{"results": {video: [{"label", "score", "segment"}]}}`` or the inner mapping; without
        ``require_label`` (class-agnostic proposals) labels may be left out."""
        return cls.from_flat(*flatten_predictions(obj, source, require_label), gt)

    @classmethod
    def from_flat(
        cls, videos: list, labels: list, scores: np.ndarray, segments: np.ndarray, gt: GroundTruth
    ) -> Predictions:
        """The arrays of :func:`flatten_predictions` (video ids, labels, scores, segments) read against ``gt``."""
        class_index = {name: k for k, name in enumerate(gt.class_names)}
        video_index = {video: v for v, video in enumerate(gt.videos)}
        return cls(
            segments=segments,
            scores=scores,
            labels=np.array([class_index.get(label, -1) for label in labels], dtype=np.int64).reshape(-1),
            video=np.array([video_index.get(video, -1) for video in videos], dtype=np.int64).reshape(-1),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Predictions:
        """The predictions where the boolean (N,) ``keep`` holds, order kept."""
        return Predictions(self.segments[keep], self.scores[keep], self.labels[keep], self.video[keep])


def flatten_predictions(
    obj: Mapping, source: str, require_label: bool = True
) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Video ids (N,), labels (N,) ("" where absent and not required), scores (N,), segments (N, 2) in file
    order; malformed input is reported by :func:`validate_predictions`, which the fast checks fall back to."""
    results = results_of(obj, source)
    try:
        entries = [(video, e) for video, es in results.items() for e in es]
        labels = [e["label"] if require_label else e.get("label", "") for _, e in entries]
        score_list = [e["score"] for _, e in entries]
        scores = np.array(score_list, dtype=float)
        segments = np.array([e["segment"] for _, e in entries] or np.zeros((0, 2)))
        well_formed = (
            set(map(type, labels)) <= {str}
            and set(map(type, score_list)) <= {int, float}
            and segments.dtype.kind in "iuf"
            and segments.shape == (len(entries), 2)
        )
    except (TypeError, KeyError, ValueError, IndexError, AttributeError):
        well_formed = False
    if well_formed:
        segments = segments.astype(float)
        well_formed = bool(np.isfinite(scores).all() and np.isfinite(segments).all())
        well_formed = well_formed and bool((segments[:, 1] >= segments[:, 0]).all())
    if not well_formed:
        validate_predictions(results, source, require_label)  # raises with the video and entry at fault
        raise DataError(f"{source}: malformed detections; expected lists of {_PREDICTION_FORMAT}")
    return [video for video, _ in entries], labels, scores, segments


def _unwrap(obj: Any, key: str, source: str) -> Mapping:
    """The inner ``key`` mapping of an ActivityNet file (``database`` or ``results``), or ``obj`` itself."""
    inner = obj.get(key) if isinstance(obj, Mapping) else None
    if isinstance(inner, Mapping):
        return inner
    if not isinstance(obj, Mapping):
        raise DataError(f"{source}: expected a JSON object with a '{key}' mapping, got {type(obj).__name__}")
    return obj


def database_of(obj: Mapping) -> Mapping:
    """The ``database`` mapping of an annotation object (or the object itself)."""
    return _unwrap(obj, "database", "ground truth")


def results_of(obj: Mapping, source: str) -> Mapping:
    """The ``results`` mapping of a result object (or the object itself); an annotation file (a ``database``
    and no ``results``) is an error saying so."""
    if isinstance(obj, Mapping) and "results" not in obj and isinstance(obj.get("database"), Mapping):
        raise DataError(
            f"{source} is an annotation file (it has a 'database' and no 'results'), not predictions: pass it "
            "as the ground truth (--gt), and as predictions a result file {'results': {video: [detections]}} "
            "(e.g. the predictions.json of `cltdr test`)"
        )
    return _unwrap(obj, "results", source)


def check_prediction_videos(ground_truth: Mapping, predictions: Mapping, subset: str, source: str) -> list[str]:
    """The videos of ``predictions`` that are not in ``subset`` of ``ground_truth``: their detections are false
    positives (as in the ActivityNet evaluation code), and a warning gives their count and a few ids; none of them
    in the subset is a :class:`DataError` (another subset's predictions?).
    A subset without videos is left to the evaluation to report."""
    wanted = subset_videos(ground_truth, subset)
    results = results_of(predictions, source)
    if not wanted:
        return []
    if not results:
        raise DataError(f"{source} holds no video: nothing to evaluate on subset {subset!r}")
    outside = [v for v in results if v not in wanted]
    if not outside:
        return outside
    database = database_of(ground_truth)
    where = Counter(str(database[v].get("subset")) if isinstance(database.get(v), dict) else None for v in outside)
    found = ", ".join(
        f"{n} in subset {name!r}" if name is not None else f"{n} not in the ground truth"
        for name, n in where.most_common()
    )
    example = ", ".join(repr(v) for v in outside[:3]) + (", ..." if len(outside) > 3 else "")
    if len(outside) == len(results):
        raise DataError(
            f"{source}: none of its {len(results)} videos is in subset {subset!r} of the ground truth ({found}; "
            f"e.g. {example}): evaluate the subset the predictions were made for (--subset)"
        )
    warnings.warn(
        f"{source}: {len(outside)} of its {counted(len(results), 'video')} {'is' if len(outside) == 1 else 'are'} "
        f"not in subset {subset!r} of the ground truth "
        f"({found}; e.g. {example}): their detections count as false positives and lower the mAP, as in the "
        "ActivityNet evaluation; leave them out or check --subset"
    )
    return outside


def _parse_annotation(ann: Any, where: str) -> tuple[float, float, str]:
    try:
        start, end = ann["segment"]
        label = ann["label"]
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{where}: expected {{'label': str, 'segment': [start, end]}}, got {ann!r}") from None
    if not (isinstance(label, str) and is_finite_number(start) and is_finite_number(end)):
        raise DataError(f"{where}: expected a string label and finite segment boundaries, got {ann!r}")
    return float(start), float(end), label


def is_finite_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
