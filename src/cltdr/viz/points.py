"""What the plots show, computed without matplotlib: pure functions returning arrays, tested on their own.

Dimension letters: L levels, T_l steps of level l, K classes, G ground truth, P points, D detections, M
thresholds, n predictions of one class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cltdr.errors import DataError
from cltdr.evaluation.inputs import (
    clean_ground_truth,
    database_of,
    flatten_predictions,
    is_finite_number,
    results_of,
)
from cltdr.evaluation.matching import Matching, precision_recall, segment_iou


# ------------------------------------------------------------------------------------------------- timeline
@dataclass
class Timeline:
    """One video: its ground truth and its best detections, one lane per class."""

    video: str
    duration: float  # seconds: the annotation's duration, else the end of the last segment
    classes: list[str]  # lanes: the ground-truth classes (sorted), then other detected classes (sorted)
    gt: np.ndarray  # (G, 2) seconds
    gt_lane: np.ndarray  # (G,) index into classes
    det: np.ndarray  # (D, 2) seconds, best score first
    det_lane: np.ndarray  # (D,)
    det_score: np.ndarray  # (D,)
    det_row: np.ndarray  # (D,) sub-row inside the lane, so that overlapping detections do not hide each other


def pack_rows(segments: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """(D,) the lowest sub-row of its lane where each segment (D, 2) overlaps no earlier-placed one, placing them
    by start (greedy interval colouring: as few rows as the deepest overlap)."""
    rows = np.zeros(len(segments), dtype=np.int64)
    ends: dict[int, list[float]] = {}  # lane -> end of the last segment in each row
    for i in np.lexsort((segments[:, 0], lanes)) if len(segments) else []:
        row_ends = ends.setdefault(int(lanes[i]), [])
        free = [r for r, end in enumerate(row_ends) if end <= segments[i, 0]]
        rows[i] = free[0] if free else len(row_ends)
        if free:
            row_ends[rows[i]] = segments[i, 1]
        else:
            row_ends.append(segments[i, 1])
    return rows


def timeline(ground_truth: Mapping, predictions: Mapping, subset: str, video: str, top: int) -> Timeline:
    """The cleaned ground truth of ``video`` (in ``subset``) and its ``top`` best detections (ties: file order)."""
    gt = clean_ground_truth(ground_truth, subset)
    results = results_of(predictions, "predictions")
    if video not in gt and video not in results:
        known = sorted(gt)[:5]
        raise DataError(
            f"video {video!r} is neither in subset {subset!r} of the ground truth nor in the "
            f"predictions; videos of the subset include {known}"
        )
    videos, labels, scores, segments = flatten_predictions({video: results.get(video, [])}, "predictions")
    best = np.argsort(-scores, kind="stable")[:top]  # (D,)
    gt_rows = gt.get(video, [])
    gt_classes = sorted({lab for _, _, lab in gt_rows})
    classes = gt_classes + sorted({labels[i] for i in best} - set(gt_classes))
    lane = {name: k for k, name in enumerate(classes)}
    info = database_of(ground_truth).get(video, {})
    ends = [e for _, e, _ in gt_rows] + segments[best, 1].tolist()
    given = info.get("duration") if isinstance(info, dict) else None
    duration = given if is_finite_number(given) and given > 0 else max(ends, default=1.0)
    det_lane = np.array([lane[labels[i]] for i in best], dtype=np.int64)
    return Timeline(
        video=video,
        duration=float(duration),
        classes=classes,
        gt=np.array([(s, e) for s, e, _ in gt_rows], dtype=float).reshape(-1, 2),
        gt_lane=np.array([lane[lab] for _, _, lab in gt_rows], dtype=np.int64),
        det=segments[best].reshape(-1, 2),
        det_lane=det_lane,
        det_score=scores[best],
        det_row=pack_rows(segments[best].reshape(-1, 2), det_lane),
    )


# ------------------------------------------------------------------------- classification score vs tIoU
@dataclass
class ScorePoints:
    """One point per (level, step, class): the step's score for the class and the tIoU of the segment it
    decodes for that class with the best-matching ground truth of the class."""

    level: np.ndarray  # (P,)
    step: np.ndarray  # (P,) step within its level
    label: np.ndarray  # (P,) class index
    score: np.ndarray  # (P,)
    tiou: np.ndarray  # (P,)

    def best(self) -> dict[int, int]:
        """class -> the point with the highest score (the first one on ties)."""
        return {
            int(k): int(np.flatnonzero(self.label == k)[np.argmax(self.score[self.label == k])])
            for k in np.unique(self.label)
        }


def score_tiou_points(
    scores: Sequence[np.ndarray], segments: Sequence[np.ndarray], gt_segments: np.ndarray, gt_labels: np.ndarray
) -> ScorePoints:
    """Points of the classes present in the ground truth, before NMS (the paper's Figure 5).

    scores: per level (T_l, K); segments: per level (T_l, K, 2), in the same unit as ``gt_segments`` (G, 2),
    whose classes are ``gt_labels`` (G,).
    """
    parts = []
    for level, (sc, seg) in enumerate(zip(scores, segments)):
        sc, seg = np.asarray(sc, dtype=float), np.asarray(seg, dtype=float)
        for k in np.unique(gt_labels):
            mine = gt_segments[gt_labels == k]  # (G_k, 2)
            tiou = segment_iou(seg[:, k, None, :], mine[None]).max(axis=1)  # (T_l,)
            steps = np.arange(len(sc))
            parts.append((np.full(len(sc), level), steps, np.full(len(sc), k), sc[:, k], tiou))
    if not parts:
        empty = np.zeros(0)
        return ScorePoints(empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64), empty, empty)
    levels, steps, labels, point_scores, tious = [np.concatenate(column) for column in zip(*parts)]
    return ScorePoints(levels.astype(np.int64), steps.astype(np.int64), labels.astype(np.int64), point_scores, tious)


# ---------------------------------------------------------------------------------- precision / recall
def class_pr_curve(matching: Matching, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (M, n) of class ``k`` after each of its ranked predictions, per threshold."""
    return precision_recall(matching.tp[:, matching.class_slice(k)], matching.num_gt[k])
