"""ActivityNet-style detection mAP (SPEC section 3), vectorised with numpy.

The numbers agree with ActivityNet's ``Evaluation/eval_detection.py`` (``ANETdetection``,
``compute_average_precision_detection``, ``interpolated_prec_rec``), tie-breaking included:

* the predictions of one class keep file order, then are ranked with ``scores.argsort()[::-1]`` (numpy's
  default, non-stable sort), so equal scores break ties exactly as there;
* for every threshold, a prediction walks the ground truth of its video and class by descending tIoU (the
  order of ``tiou.argsort()[::-1]``), becomes a false positive at the first one below the threshold, skips
  those already matched, and is a true positive on the first free one; a prediction on a video with no ground
  truth of its class is a false positive; a prediction whose label is not a ground-truth class is ignored;
* AP is the area under the precision envelope (monotone from the right) summed over recall steps; a class
  without predictions gets AP 0; mAP averages over the classes of the (cleaned) ground truth.

Speed: the matching of one prediction only depends on earlier predictions of the same (class, video) group,
so step ``s`` of the greedy loop handles the ``s``-th prediction of every group at once. The Python loop
therefore runs ``max group size`` times, not once per prediction, and only over predictions that reach the
lowest threshold on some ground truth (the others are false positives everywhere).

Dimension letters: N predictions, G ground-truth instances, M tIoU thresholds, K classes, R predictions of
one bucket, Q candidate (prediction, ground truth) pairs, A predictions handled in one greedy step.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cltdr.errors import DataError

MIN_SEGMENT_S = 1e-3  # ground-truth segments shorter than this are dropped
DUPLICATE_TOL_S = 1e-3  # same label and both boundaries this close to a kept segment: duplicate, dropped

_PREDICTION_FORMAT = "{'label': str, 'score': finite number, 'segment': [start, end] with start <= end}"


@dataclass
class MapResult:
    """AP per threshold and class; ``mAP`` and ``average_mAP`` are derived from it."""

    tiou_thresholds: np.ndarray  # (M,)
    class_names: list[str]  # (K,) classes of the cleaned ground truth, sorted by name
    ap: np.ndarray  # (M, K)
    num_ground_truth: np.ndarray  # (K,) cleaned ground-truth instances per class

    @property
    def mAP(self) -> np.ndarray:
        """(M,) mean AP over the ground-truth classes, per threshold."""
        return self.ap.mean(axis=1)

    @property
    def average_mAP(self) -> float:
        """mAP averaged over the thresholds."""
        return float(self.mAP.mean())

    def to_json(self) -> dict:
        keys = [f"{t:.2f}" for t in self.tiou_thresholds]
        return {
            "mAP": {key: float(m) for key, m in zip(keys, self.mAP)},
            "average_mAP": self.average_mAP,
            "per_class_ap": {
                name: {key: float(a) for key, a in zip(keys, self.ap[:, k])}
                for k, name in enumerate(self.class_names)
            },
        }

    def format_table(self) -> str:
        """Two aligned rows: the thresholds, then mAP in % (with the average in the last column)."""
        head = ["tIoU"] + [f"{t:.2f}" for t in self.tiou_thresholds] + ["Avg"]
        row = ["mAP (%)"] + [f"{100 * m:.2f}" for m in self.mAP] + [f"{100 * self.average_mAP:.2f}"]
        widths = [max(len(a), len(b)) for a, b in zip(head, row)]
        return "\n".join(" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in (head, row))


def load_json(path: str | os.PathLike, what: str) -> dict:
    """Read a JSON object from ``path``; ``what`` ("ground truth", "predictions") names it in errors."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{what} file {path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {what} file {path}: {err}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{what} file {path}: expected a JSON object at the top level, got {type(obj).__name__}")
    return obj


def validate_predictions(obj: Mapping, source: str) -> None:
    """Raise :class:`DataError` naming the video and entry of the first malformed detection.

    ``obj`` is an ActivityNet result object ``{"results": {video: [detection, ...]}}`` or its inner mapping.
    """
    results = _results(obj, source)
    for video, entries in results.items():
        if not isinstance(entries, list):
            raise DataError(f"{source}: video {video!r}: expected a list of detections, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            where = f"{source}: video {video!r}, entry {i}"
            if not isinstance(entry, dict):
                raise DataError(f"{where}: expected an object {_PREDICTION_FORMAT}, got {entry!r}")
            missing = [key for key in ("label", "score", "segment") if key not in entry]
            if missing:
                raise DataError(f"{where}: missing {', '.join(missing)}; expected {_PREDICTION_FORMAT}")
            label, score, segment = entry["label"], entry["score"], entry["segment"]
            if not isinstance(label, str):
                raise DataError(f"{where}: label {label!r} is not a string (class names are expected)")
            if not _is_finite_number(score):
                raise DataError(f"{where}: score {score!r} is not a finite number")
            if not (
                isinstance(segment, (list, tuple)) and len(segment) == 2 and all(map(_is_finite_number, segment))
            ):
                raise DataError(f"{where}: segment {segment!r} is not [start, end] with finite numbers")
            if segment[1] < segment[0]:
                raise DataError(f"{where}: segment {segment!r} ends before it starts")


def clean_ground_truth(database: Mapping, subset: str) -> dict[str, list[tuple[float, float, str]]]:
    """video id -> [(start, end, label)] for the videos of ``subset`` (case-insensitive), in file order.

    Drops segments shorter than ``MIN_SEGMENT_S`` and duplicates: same label and both boundaries within
    ``DUPLICATE_TOL_S`` of a segment kept earlier in the same video. Accepts the whole annotation object or
    its ``"database"`` mapping.
    """
    database = _database(database)
    wanted = subset.lower()
    cleaned: dict[str, list[tuple[float, float, str]]] = {}
    for video, info in database.items():
        if not isinstance(info, dict) or not isinstance(info.get("subset"), str):
            raise DataError(f"ground truth: video {video!r} has no 'subset' string (e.g. 'Test', 'validation')")
        if info["subset"].lower() != wanted:
            continue
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


def evaluate_map(
    ground_truth: Mapping, predictions: Mapping, subset: str, tiou_thresholds: Sequence[float]
) -> MapResult:
    """ActivityNet detection mAP of ``predictions`` against the cleaned ground truth of ``subset``.

    ``ground_truth``: ``{"database": {video: {"subset", "annotations": [{"label", "segment"}]}}}`` or the
    inner mapping. ``predictions``: ``{"results": {video: [{"label", "score", "segment"}]}}`` or the inner
    mapping.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=float)  # (M,)
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise ValueError(f"tiou_thresholds must be a non-empty list of numbers in [0, 1], got {tiou_thresholds!r}")
    gt = clean_ground_truth(ground_truth, subset)
    class_names = sorted({label for segments in gt.values() for _, _, label in segments})
    if not class_names:
        subsets = sorted({str(v.get("subset")) for v in _database(ground_truth).values() if isinstance(v, dict)})
        raise DataError(f"ground truth has no annotated video in subset {subset!r}; subsets present: {subsets}")
    class_index = {name: k for k, name in enumerate(class_names)}
    video_index = {video: v for v, video in enumerate(gt)}
    K, V = len(class_names), len(video_index)

    # Ground truth in file order, then grouped by (class, video) with a stable sort: G rows.
    g_seg = np.array([(s, e) for segs in gt.values() for s, e, _ in segs], dtype=float).reshape(-1, 2)  # (G, 2)
    g_cls = np.array([class_index[lab] for segs in gt.values() for _, _, lab in segs], dtype=np.int64)  # (G,)
    g_vid = np.array([v for v, segs in enumerate(gt.values()) for _ in segs], dtype=np.int64)  # (G,)
    by_group = np.argsort(g_cls * V + g_vid, kind="stable")
    g_seg, g_key = g_seg[by_group], (g_cls * V + g_vid)[by_group]
    group_keys, group_start, group_size = np.unique(g_key, return_index=True, return_counts=True)
    num_gt = np.bincount(g_cls, minlength=K)  # (K,)

    # Predictions in file order, those with a ground-truth class only: N rows.
    videos, labels, p_score, p_seg = _flatten_predictions(predictions, "predictions")
    known = np.array([label in class_index for label in labels], dtype=bool)
    p_cls = np.array([class_index[label] for label, ok in zip(labels, known) if ok], dtype=np.int64)  # (N,)
    p_vid = np.array([video_index.get(v, -1) for v, ok in zip(videos, known) if ok], dtype=np.int64)  # (N,)
    p_score, p_seg = p_score[known], p_seg[known]
    N = len(p_cls)

    # ActivityNet's ranking inside each class; `order` lists classes one after the other.
    by_class = np.argsort(p_cls, kind="stable")  # (N,) file order inside each class
    bounds = np.searchsorted(p_cls[by_class], np.arange(K + 1))  # (K + 1,)
    order = np.empty(N, dtype=np.int64)
    for k in range(K):
        idx = by_class[bounds[k] : bounds[k + 1]]
        order[bounds[k] : bounds[k + 1]] = idx[np.argsort(p_score[idx])[::-1]]
    rank = np.empty(N, dtype=np.int64)
    rank[order] = np.arange(N)

    # The (class, video) group of each prediction; -1 when its video has no ground truth of its class.
    p_key = p_cls * V + p_vid
    p_group = np.searchsorted(group_keys, p_key).clip(max=len(group_keys) - 1)  # (N,)
    p_group[(p_vid < 0) | (group_keys[p_group] != p_key)] = -1

    pair_pred, pair_gt, pair_tiou = _candidate_pairs(
        p_seg, p_group, g_seg, group_start, group_size, float(thresholds.min())
    )
    tp = _greedy_match(pair_pred, pair_gt, pair_tiou, p_group, rank, thresholds, N, len(g_seg))  # (M, N)

    ap = np.zeros((len(thresholds), K))
    for k in range(K):
        ap[:, k] = _interpolated_ap(tp[:, order[bounds[k] : bounds[k + 1]]], num_gt[k])
    return MapResult(thresholds, class_names, ap, num_gt)


def _segment_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tIoU of predictions (R, 1, 2) with ground truth (R, G, 2) -> (R, G), with ActivityNet's float ops."""
    inter = (np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0])).clip(0)
    union = (gt[..., 1] - gt[..., 0]) + (pred[..., 1] - pred[..., 0]) - inter
    return inter / union


def _candidate_pairs(
    p_seg: np.ndarray,  # (N, 2)
    p_group: np.ndarray,  # (N,)
    g_seg: np.ndarray,  # (G, 2) grouped by (class, video), file order inside a group
    group_start: np.ndarray,
    group_size: np.ndarray,
    min_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, ground truth, tIoU) pairs that reach ``min_threshold``, each prediction's pairs contiguous
    and in ActivityNet's walk order (``tiou.argsort()[::-1]`` over its group in file order): 3 x (Q,)."""
    preds, gts, tious = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    matched = np.nonzero(p_group >= 0)[0]
    sizes = group_size[p_group[matched]]
    # Bucket by group size so that each bucket is a rectangle; a row-wise argsort equals the 1-D one.
    for size in np.unique(sizes):
        rows = matched[sizes == size]  # (R,)
        gt_idx = group_start[p_group[rows], None] + np.arange(size)  # (R, G)
        tiou = _segment_iou(p_seg[rows, None], g_seg[gt_idx])  # (R, G)
        walk = np.argsort(tiou, axis=1)[:, ::-1]  # (R, G)
        tiou, gt_idx = np.take_along_axis(tiou, walk, 1), np.take_along_axis(gt_idx, walk, 1)
        keep = tiou >= min_threshold  # (R, G), a prefix of each row
        preds.append(np.broadcast_to(rows[:, None], keep.shape)[keep])
        gts.append(gt_idx[keep])
        tious.append(tiou[keep])
    pair_pred = np.concatenate(preds)
    by_pred = np.argsort(pair_pred, kind="stable")  # keeps the walk order inside each prediction
    return pair_pred[by_pred], np.concatenate(gts)[by_pred], np.concatenate(tious)[by_pred]


def _greedy_match(
    pair_pred: np.ndarray,  # (Q,) sorted, each prediction's pairs contiguous in walk order
    pair_gt: np.ndarray,  # (Q,)
    pair_tiou: np.ndarray,  # (Q,)
    p_group: np.ndarray,  # (N,)
    rank: np.ndarray,  # (N,) ActivityNet's score order inside each class
    thresholds: np.ndarray,  # (M,)
    num_pred: int,
    num_gt: int,
) -> np.ndarray:
    """(M, N) true-positive flags; predictions without a candidate pair stay false positives."""
    preds, first_pair, num_pairs = np.unique(pair_pred, return_index=True, return_counts=True)
    # Step s of the greedy loop takes the s-th prediction (by rank) of every (class, video) group.
    srt = np.lexsort((rank[preds], p_group[preds]))
    group = p_group[preds][srt]
    starts = np.ones(len(group), dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    step = np.arange(len(srt)) - np.maximum.accumulate(np.where(starts, np.arange(len(srt)), 0))
    by_step = srt[np.argsort(step, kind="stable")]
    step_bounds = np.r_[0, np.cumsum(np.bincount(step))]

    tp = np.zeros((len(thresholds), num_pred), dtype=bool)  # (M, N)
    locked = np.zeros((len(thresholds), num_gt), dtype=bool)  # (M, G)
    for s in range(len(step_bounds) - 1):
        batch = by_step[step_bounds[s] : step_bounds[s + 1]]  # (A,) at most one per group: no conflicts
        lengths = num_pairs[batch]
        offsets = np.cumsum(lengths) - lengths  # (A,)
        flat = np.repeat(first_pair[batch] - offsets, lengths) + np.arange(lengths.sum())  # (Q,)
        free = (pair_tiou[flat] >= thresholds[:, None]) & ~locked[:, pair_gt[flat]]  # (M, Q)
        # First free pair of each prediction in walk order; len(flat) when none is free (false positive).
        first = np.minimum.reduceat(np.where(free, np.arange(len(flat)), len(flat)), offsets, axis=1)  # (M, A)
        m, a = np.nonzero(first < len(flat))
        tp[m, preds[batch[a]]] = True
        locked[m, pair_gt[flat[first[m, a]]]] = True
    return tp


def _interpolated_ap(tp: np.ndarray, num_gt: int) -> np.ndarray:
    """AP per threshold from the (M, n) true-positive flags of one class in rank order -> (M,)."""
    tp_cum = np.cumsum(tp, axis=1, dtype=float)  # (M, n)
    fp_cum = np.cumsum(~tp, axis=1, dtype=float)
    precision = np.pad(tp_cum / (tp_cum + fp_cum), ((0, 0), (1, 1)))  # (M, n + 2), 0 at both ends
    ones = np.ones((len(tp), 1))
    recall = np.concatenate([0 * ones, tp_cum / num_gt, ones], axis=1)  # (M, n + 2)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(recall, axis=1) * envelope[:, 1:], axis=1)


def _flatten_predictions(obj: Mapping, source: str) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Video ids (N,), labels (N,), scores (N,), segments (N, 2) in file order; malformed input is reported
    by :func:`validate_predictions`, which the fast checks here fall back to."""
    results = _results(obj, source)
    try:
        entries = [(video, e) for video, es in results.items() for e in es]
        labels = [e["label"] for _, e in entries]
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
        validate_predictions(results, source)  # raises with the video and entry at fault
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


def _database(obj: Mapping) -> Mapping:
    return _unwrap(obj, "database", "ground truth")


def _results(obj: Mapping, source: str) -> Mapping:
    return _unwrap(obj, "results", source)


def _parse_annotation(ann: Any, where: str) -> tuple[float, float, str]:
    try:
        start, end = ann["segment"]
        label = ann["label"]
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{where}: expected {{'label': str, 'segment': [start, end]}}, got {ann!r}") from None
    if not (isinstance(label, str) and _is_finite_number(start) and _is_finite_number(end)):
        raise DataError(f"{where}: expected a string label and finite segment boundaries, got {ann!r}")
    return float(start), float(end), label


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
