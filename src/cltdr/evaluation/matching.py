"""The one matching routine behind mAP, recall and the error diagnosis (ActivityNet ``eval_detection`` rules).

* The predictions of one class keep file order, then are ranked with ``scores.argsort()[::-1]`` (numpy's
  default, non-stable sort), so equal scores break ties exactly as ActivityNet does;
* for every threshold, a prediction walks the ground truth of its video and class by descending tIoU (the
  order of ``tiou.argsort()[::-1]``), becomes a false positive at the first one below the threshold, skips
  those already matched, and is a true positive on the first free one; a prediction on a video with no ground
  truth of its class is a false positive.

Speed: the matching of one prediction only depends on earlier predictions of the same (class, video) group,
so step ``s`` of the greedy loop handles the ``s``-th prediction of every group at once. The Python loop
therefore runs ``max group size`` times, not once per prediction, and only over predictions that reach the
lowest threshold on some ground truth (the others are false positives everywhere).

Dimension letters: N predictions, G ground-truth instances, M tIoU thresholds, K classes, U groups,
R predictions of one bucket, Q candidate (prediction, ground truth) pairs, A predictions of one greedy step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cltdr.evaluation.inputs import GroundTruth, Predictions


@dataclass
class Matching:
    """Every prediction's match at every threshold; predictions are those of known classes, in file order."""

    thresholds: np.ndarray  # (M,)
    predictions: Predictions  # N predictions, all with a ground-truth class
    matched: np.ndarray  # (M, N) index of the matched ground truth (file order), -1 for a false positive
    order: np.ndarray  # (N,) predictions ranked class by class: order[bounds[k]:bounds[k + 1]] is class k
    bounds: np.ndarray  # (K + 1,)
    rank: np.ndarray  # (N,) position of each prediction in its class's ranking
    num_gt: np.ndarray  # (K,) ground-truth instances per class

    @cached_property
    def tp(self) -> np.ndarray:
        """(M, N) true-positive flags."""
        return self.matched >= 0

    def class_slice(self, k: int) -> np.ndarray:
        """Indices of class ``k``'s predictions, best first."""
        return self.order[self.bounds[k] : self.bounds[k + 1]]

    def select(self, keep: np.ndarray) -> Matching:
        """The matching of the predictions where the boolean (N,) ``keep`` holds, ranking order kept (the
        matches are not recomputed: the others are as if removed after matching)."""
        new_index = np.cumsum(keep) - 1  # (N,) position among the kept
        order = new_index[self.order[keep[self.order]]]
        labels = self.predictions.labels[keep]
        bounds = np.searchsorted(labels[order], np.arange(len(self.num_gt) + 1))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = _rank_from_order(order, bounds)
        return Matching(
            self.thresholds, self.predictions.select(keep), self.matched[:, keep], order, bounds, rank, self.num_gt
        )


def match(gt: GroundTruth, pred: Predictions, thresholds) -> Matching:
    """Match the predictions of ground-truth classes (others are dropped) to ``gt`` at every threshold."""
    thresholds = np.asarray(thresholds, dtype=float)  # (M,)
    pred = pred.select(pred.labels >= 0)
    K, V, N = gt.num_classes, len(gt.videos), len(pred)
    order, bounds, rank = rank_within(pred.labels, pred.scores, K)
    groups = Groups.of(gt.labels * V + gt.video)
    p_group = groups.find(np.where(pred.video >= 0, pred.labels * V + pred.video, -1))  # (N,)
    pair_pred, pair_gt, pair_tiou = candidate_pairs(pred.segments, p_group, gt.segments, groups, thresholds.min())
    matched = _greedy_match(pair_pred, pair_gt, pair_tiou, p_group, rank, thresholds, N, len(gt.labels))
    return Matching(thresholds, pred, matched, order, bounds, rank, gt.num_per_class)


def rank_within(groups: np.ndarray, scores: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ActivityNet's ranking inside each group: ``order`` (N',) lists the groups one after the other (rows
    with a negative group left out), ``bounds`` (num_groups + 1,) delimit them, ``rank`` (N,) is each row's
    position inside its group (-1 for left-out rows)."""
    by_group = np.argsort(groups, kind="stable")  # (N,) file order inside each group
    by_group = by_group[groups[by_group] >= 0]
    bounds = np.searchsorted(groups[by_group], np.arange(num_groups + 1))  # (num_groups + 1,)
    order = np.empty(len(by_group), dtype=np.int64)
    for k in np.nonzero(np.diff(bounds))[0]:
        idx = by_group[bounds[k] : bounds[k + 1]]
        order[bounds[k] : bounds[k + 1]] = idx[np.argsort(scores[idx])[::-1]]
    rank = np.full(len(groups), -1, dtype=np.int64)
    rank[order] = _rank_from_order(order, bounds)
    return order, bounds, rank


def _rank_from_order(order: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(len(order),) position inside its group of the row listed ``i``-th by ``order``."""
    return np.arange(len(order)) - np.repeat(bounds[:-1], np.diff(bounds))


@dataclass
class Groups:
    """Ground-truth rows grouped by an integer key with a stable sort (file order inside a group)."""

    perm: np.ndarray  # (G,) grouped position -> file index
    keys: np.ndarray  # (U,) sorted distinct keys
    start: np.ndarray  # (U,) first grouped position of each group
    size: np.ndarray  # (U,)

    @classmethod
    def of(cls, keys: np.ndarray) -> Groups:
        perm = np.argsort(keys, kind="stable")
        distinct, start, size = np.unique(keys[perm], return_index=True, return_counts=True)
        return cls(perm, distinct, start, size)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """(N,) group index of each key, -1 where no ground truth has it."""
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        found = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return np.where(self.keys[found] == keys, found, -1)


def segment_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tIoU of segments (..., 2) with segments (..., 2), broadcast, with ActivityNet's float operations."""
    inter = (np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0])).clip(0)
    union = (gt[..., 1] - gt[..., 0]) + (pred[..., 1] - pred[..., 0]) - inter
    return inter / union


def candidate_pairs(
    p_seg: np.ndarray,  # (N, 2)
    p_group: np.ndarray,  # (N,) group of each prediction, -1 for none
    g_seg: np.ndarray,  # (G, 2) file order
    groups: Groups,
    min_tiou: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, ground truth, tIoU) pairs of the same group that reach ``min_tiou``: 3 x (Q,), ground truth
    as file indices, each prediction's pairs contiguous and in ActivityNet's walk order (``tiou.argsort()[::-1]``
    over its group in file order)."""
    preds, gts, tious = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    matched = np.nonzero(p_group >= 0)[0]
    sizes = groups.size[p_group[matched]]
    # Bucket by group size so that each bucket is a rectangle; a row-wise argsort equals the 1-D one.
    for size in np.unique(sizes):
        rows = matched[sizes == size]  # (R,)
        gt_idx = groups.perm[groups.start[p_group[rows], None] + np.arange(size)]  # (R, size) file indices
        tiou = segment_iou(p_seg[rows, None], g_seg[gt_idx])  # (R, size)
        walk = np.argsort(tiou, axis=1)[:, ::-1]  # (R, size)
        tiou, gt_idx = np.take_along_axis(tiou, walk, 1), np.take_along_axis(gt_idx, walk, 1)
        keep = tiou >= min_tiou  # (R, size), a prefix of each row
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
    """(M, N) matched ground truth per threshold; predictions without a candidate pair stay false positives."""
    matched = np.full((len(thresholds), num_pred), -1, dtype=np.int64)  # (M, N)
    if len(pair_pred) == 0:
        return matched
    preds, first_pair, num_pairs = np.unique(pair_pred, return_index=True, return_counts=True)
    # Step s of the greedy loop takes the s-th prediction (by rank) of every (class, video) group.
    srt = np.lexsort((rank[preds], p_group[preds]))
    group = p_group[preds][srt]
    starts = np.ones(len(group), dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    step = np.arange(len(srt)) - np.maximum.accumulate(np.where(starts, np.arange(len(srt)), 0))
    by_step = srt[np.argsort(step, kind="stable")]
    step_bounds = np.r_[0, np.cumsum(np.bincount(step))]

    locked = np.zeros((len(thresholds), num_gt), dtype=bool)  # (M, G)
    for s in range(len(step_bounds) - 1):
        batch = by_step[step_bounds[s] : step_bounds[s + 1]]  # (A,) at most one per group: no conflicts
        lengths = num_pairs[batch]
        offsets = np.cumsum(lengths) - lengths  # (A,)
        flat = np.repeat(first_pair[batch] - offsets, lengths) + np.arange(lengths.sum())  # (Q',)
        free = (pair_tiou[flat] >= thresholds[:, None]) & ~locked[:, pair_gt[flat]]  # (M, Q')
        # First free pair of each prediction in walk order; len(flat) when none is free (false positive).
        first = np.minimum.reduceat(np.where(free, np.arange(len(flat)), len(flat)), offsets, axis=1)  # (M, A)
        m, a = np.nonzero(first < len(flat))
        gt_idx = pair_gt[flat[first[m, a]]]
        matched[m, preds[batch[a]]] = gt_idx
        locked[m, gt_idx] = True
    return matched


def precision_recall(
    tp: np.ndarray, num_gt: int, normalized_count: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (M, n) after each rank, from the (M, n) true-positive flags of one class in rank
    order. With ``normalized_count`` (DETAD's normalised precision) precision is ``R * Nc / (R * Nc + FP)``
    with R the recall, as if every class had ``normalized_count`` instances."""
    tp_cum = np.cumsum(tp, axis=1, dtype=float)  # (M, n)
    fp_cum = np.cumsum(~tp, axis=1, dtype=float)
    recall = tp_cum / num_gt
    if normalized_count is None:
        return tp_cum / (tp_cum + fp_cum), recall
    return recall * normalized_count / (recall * normalized_count + fp_cum), recall


def interpolated_ap(tp: np.ndarray, num_gt: int, normalized_count: float | None = None) -> np.ndarray:
    """AP per threshold from the (M, n) true-positive flags of one class in rank order -> (M,): the area under
    the precision envelope (monotone from the right), summed over recall steps; AP_N with ``normalized_count``
    (see :func:`precision_recall`)."""
    precision, recall = precision_recall(tp, num_gt, normalized_count)
    precision = np.pad(precision, ((0, 0), (1, 1)))  # (M, n + 2), 0 at both ends
    ones = np.ones((len(tp), 1))
    recall = np.concatenate([0 * ones, recall, ones], axis=1)  # (M, n + 2)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(recall, axis=1) * envelope[:, 1:], axis=1)
