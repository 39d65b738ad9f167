"""Error diagnosis of a detector, as DETAD does it (Alwassel et al., ECCV 2018; the paper's supplementary F).

Three analyses on the same :class:`~cltdr.evaluation.matching.Matching` that the mAP uses:

* **False positives.** Each class keeps its best ``10 x G_c`` predictions (``G_c`` its instances). A
  prediction that is not a true positive is, by its highest tIoU with any ground truth of its video (any
  class; ties: the first in file order): a *double detection* (tIoU >= threshold, same label: its action was
  already taken), a *wrong label* (tIoU >= threshold, other label), a *localization* error (``min_tiou`` <=
  tIoU < threshold, same label), a *confusion* (the same, other label) or *background* (tIoU < ``min_tiou``).
  The profile gives the share of each type among the predictions ranked in ``[(k-1) G_c, k G_c)`` of their
  class (DETAD's "kG" bars; the cumulative top-kG share is reported too), and the gain of each type is the
  average-mAP_N improvement when that type's false positives are removed from the ranking.
* **Sensitivity.** mAP_N restricted to the ground truth of one bin of a characteristic (coverage = length /
  video duration, length in seconds, number of instances of the same class in the video): the bin's ground
  truth, the predictions that are false positives or match it (at every threshold), recall over the bin.
* **False negatives.** The share of a bin's ground truth that no prediction detects, counting only matches
  made where the normalised precision is above 0.05 (DETAD's rule).

mAP_N is AP with precision normalised to the average number of instances per class ``Nc = G / K``:
``P_N = R * Nc / (R * Nc + FP)``. Everything is averaged over the given tIoU thresholds (DETAD uses 0.5 on
THUMOS14 and 0.5:0.05:0.95 on ActivityNet). Differences from the DETAD code: the ground truth is cleaned as
for the mAP, predictions of classes absent from the ground truth are ignored (DETAD stops), and a class with
ground truth in a bin but no prediction gets AP 0.

Dimension letters: N predictions, G ground-truth instances, M thresholds, K classes, B blocks of the profile,
E error types, Q candidate pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cltdr.errors import DataError
from cltdr.evaluation.inputs import GroundTruth, Predictions
from cltdr.evaluation.map import check_thresholds
from cltdr.evaluation.matching import Groups, Matching, candidate_pairs, interpolated_ap, match, precision_recall

ERROR_TYPES = ("true_positive", "double_detection", "wrong_label", "localization", "confusion", "background")
TRUE_POSITIVE, DOUBLE_DETECTION, WRONG_LABEL, LOCALIZATION, CONFUSION, BACKGROUND = range(len(ERROR_TYPES))
MIN_TIOU = 0.1  # below this tIoU with every ground truth a false positive is background
PROFILE_BLOCKS = 10  # the profile covers the best 10 x G_c predictions of each class, in blocks of G_c
FN_MIN_PRECISION = 0.05  # false-negative analysis: matches at a normalised precision at or below this are ignored
CHARACTERISTICS = ("coverage", "length", "num_instances")


@dataclass(frozen=True)
class Bins:
    """Right-closed intervals ``(edges[i], edges[i + 1]]`` named ``names[i]``; the first also holds its left
    edge (``pandas.cut(..., include_lowest=True)``, as DETAD bins)."""

    edges: tuple[float, ...]
    names: tuple[str, ...]

    def assign(self, values: np.ndarray) -> np.ndarray:
        """(G,) bin index of each value, -1 outside the edges or NaN."""
        values = np.asarray(values, dtype=float)
        idx = np.searchsorted(np.asarray(self.edges[1:-1]), values, side="left")
        inside = (values >= self.edges[0]) & (values <= self.edges[-1])
        return np.where(inside, idx, -1)


_XS_XL = ("XS", "S", "M", "L", "XL")
# DETAD's bin edges: its THUMOS14 setting and its ActivityNet setting (coverage is a share of the video, length
# in seconds, number of instances of the class in the video).
CHARACTERISTIC_BINS: dict[str, dict[str, Bins]] = {
    "thumos14": {
        "coverage": Bins((0, 0.02, 0.04, 0.06, 0.08, 1), _XS_XL),
        "length": Bins((0, 3, 6, 12, 18, math.inf), _XS_XL),
        "num_instances": Bins((-1, 1, 40, 80, math.inf), _XS_XL[:4]),
    },
    "activitynet": {
        "coverage": Bins((0, 0.2, 0.4, 0.6, 0.8, 1), _XS_XL),
        "length": Bins((0, 30, 60, 120, 180, math.inf), _XS_XL),
        "num_instances": Bins((-1, 1, 4, 8, math.inf), _XS_XL[:4]),
    },
}


def characteristics(gt: GroundTruth) -> dict[str, np.ndarray]:
    """(G,) coverage (length / duration, NaN where the video has no duration), length (s), number of instances
    of the same class in the same video."""
    length = gt.segments[:, 1] - gt.segments[:, 0]
    key = gt.labels * len(gt.videos) + gt.video
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return {
        "coverage": length / gt.durations[gt.video],
        "length": length,
        "num_instances": counts[inverse.reshape(-1)].astype(float),
    }


def best_overlap(gt: GroundTruth, pred: Predictions, min_tiou: float) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's best ground truth in its video, any class: (N,) tIoU (0 where none reaches
    ``min_tiou``) and (N,) ground-truth index (file order, -1 where none). Ties: the first in file order."""
    groups = Groups.of(gt.video)
    pair_pred, pair_gt, pair_tiou = candidate_pairs(
        pred.segments, groups.find(pred.video), gt.segments, groups, min_tiou
    )
    # Each prediction's best pair: highest tIoU, then the first ground truth in file order (numpy's argmax).
    best = np.lexsort((pair_gt, -pair_tiou, pair_pred))
    first = best[np.r_[True, pair_pred[best][1:] != pair_pred[best][:-1]]] if len(best) else best
    top_tiou = np.zeros(len(pred))  # (N,)
    top_gt = np.full(len(pred), -1, dtype=np.int64)  # (N,)
    top_tiou[pair_pred[first]] = pair_tiou[first]
    top_gt[pair_pred[first]] = pair_gt[first]
    return top_tiou, top_gt


def error_types(gt: GroundTruth, matching: Matching, min_tiou: float = MIN_TIOU) -> np.ndarray:
    """(M, N) error type (an index into :data:`ERROR_TYPES`) of every prediction of ``matching``."""
    pred = matching.predictions
    top_tiou, top_gt = best_overlap(gt, pred, min(min_tiou, float(matching.thresholds.min())))  # (N,), (N,)
    hit = top_gt >= 0
    same_label = np.zeros(len(pred), dtype=bool)  # (N,)
    same_label[hit] = gt.labels[top_gt[hit]] == pred.labels[hit]
    above = top_tiou >= matching.thresholds[:, None]  # (M, N)
    near = top_tiou >= min_tiou  # (N,)
    fp_type = np.where(
        above,
        np.where(same_label, DOUBLE_DETECTION, WRONG_LABEL),
        np.where(near, np.where(same_label, LOCALIZATION, CONFUSION), BACKGROUND),
    )
    return np.where(matching.tp, TRUE_POSITIVE, fp_type)


def class_average_map_n(
    matching: Matching,
    normalized_count: float,
    *,
    limit: int | None = None,
    drop: np.ndarray | None = None,
    num_gt: np.ndarray | None = None,
) -> np.ndarray:
    """(M, K) AP_N per threshold and class (NaN for a class without ground truth).

    limit: keep each class's best ``limit x G_c`` predictions. drop: (M, N) predictions to leave out, per
    threshold. num_gt: (K,) the recall denominators (default: the instances of each class).
    """
    num_gt = matching.num_gt if num_gt is None else num_gt
    K = len(matching.num_gt)
    ap = np.full((len(matching.thresholds), K), np.nan)
    for k in np.nonzero(num_gt)[0]:
        idx = matching.class_slice(int(k))
        if limit is not None:
            idx = idx[: limit * matching.num_gt[k]]
        tp = matching.tp[:, idx]  # (M, n)
        if drop is None:
            ap[:, k] = interpolated_ap(tp, num_gt[k], normalized_count)
            continue
        for m in range(len(matching.thresholds)):
            row = tp[m, ~drop[m, idx]][None]
            ap[m, k] = interpolated_ap(row, num_gt[k], normalized_count)[0]
    return ap


@dataclass
class FalsePositiveAnalysis:
    block_shares: np.ndarray  # (B, E) share of each type among the predictions ranked in [(b) G_c, (b+1) G_c)
    block_sizes: np.ndarray  # (B,)
    cumulative_shares: np.ndarray  # (B, E) the same among the top (b+1) G_c
    average_map_n: float  # of the best 10 G_c predictions per class
    removal_gain: np.ndarray  # (E - 1,) average-mAP_N gain when each false-positive type is removed


def false_positive_analysis(
    types: np.ndarray, matching: Matching, normalized_count: float, blocks: int = PROFILE_BLOCKS
) -> FalsePositiveAnalysis:
    """The false-positive profile over ``blocks`` blocks of ``G_c`` predictions and the gain of removing each
    error type, from the (M, N) ``types`` of :func:`error_types`."""
    pred = matching.predictions
    block = matching.rank // matching.num_gt[pred.labels]  # (N,)
    inside = block < blocks
    counts = np.zeros((blocks, len(ERROR_TYPES)))  # (B, E) summed over thresholds
    for row in types:
        np.add.at(counts, (block[inside], row[inside]), 1)
    counts /= len(matching.thresholds)
    sizes = np.bincount(block[inside], minlength=blocks)  # (B,)
    cumulative = np.cumsum(counts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.nan_to_num(counts / sizes[:, None])
        cum_shares = np.nan_to_num(cumulative / np.cumsum(sizes)[:, None])
    base = float(np.nanmean(class_average_map_n(matching, normalized_count, limit=blocks)))
    gains = np.array(
        [
            float(np.nanmean(class_average_map_n(matching, normalized_count, limit=blocks, drop=types == code))) - base
            for code in range(1, len(ERROR_TYPES))
        ]
    )
    return FalsePositiveAnalysis(shares, sizes, cum_shares, base, gains)


def sensitivity(
    matching: Matching, gt_labels: np.ndarray, gt_bins: np.ndarray, num_bins: int, normalized_count: float
) -> np.ndarray:
    """(num_bins,) average-mAP_N of each bin (NaN for an empty bin), from the (G,) class and bin (-1: none)
    of every ground truth."""
    values = np.full(num_bins, np.nan)
    for b in range(num_bins):
        num_gt = np.bincount(gt_labels[gt_bins == b], minlength=len(matching.num_gt))  # (K,)
        if num_gt.sum() == 0:
            continue
        in_bin = np.r_[gt_bins == b, True]  # a false positive (-1) reads the last entry: kept
        keep = in_bin[matching.matched].all(axis=0)  # (N,) false positive or matched in the bin, at every threshold
        ap = class_average_map_n(matching.select(keep), normalized_count, num_gt=num_gt)  # (M, K)
        values[b] = np.nanmean(ap.mean(axis=0))
    return values


def false_negative_rates(
    matching: Matching,
    gt_bins: np.ndarray,
    num_bins: int,
    normalized_count: float,
    min_precision: float = FN_MIN_PRECISION,
) -> np.ndarray:
    """(num_bins,) share of each bin's ground truth left undetected, averaged over thresholds (NaN: empty bin).
    A match counts only where the class's normalised precision at that rank is above ``min_precision``."""
    M = len(matching.thresholds)
    detected = np.zeros((M, len(gt_bins)), dtype=bool)  # (M, G)
    for k in range(len(matching.num_gt)):
        idx = matching.class_slice(int(k))
        tp = matching.tp[:, idx]  # (M, n)
        precision, _ = precision_recall(tp, matching.num_gt[k], normalized_count)
        ok = tp & (precision > min_precision)
        m, j = np.nonzero(ok)
        detected[m, matching.matched[m, idx[j]]] = True
    rates = np.full(num_bins, np.nan)
    for b in range(num_bins):
        in_bin = gt_bins == b
        if in_bin.any():
            rates[b] = 1.0 - detected[:, in_bin].mean()
    return rates


@dataclass
class Diagnosis:
    """All three analyses of one prediction file; :meth:`to_json` is what ``cltdr diagnose`` writes."""

    thresholds: np.ndarray  # (M,)
    num_ground_truth: int  # G
    num_classes: int  # K
    normalized_count: float  # Nc = G / K
    bins_name: str
    bins: dict[str, Bins]
    false_positives: FalsePositiveAnalysis
    average_map_n: float  # of all predictions: the reference line of the sensitivity analysis
    sensitivity: dict[str, np.ndarray]  # characteristic -> (bins,) average-mAP_N, NaN for an empty bin
    bin_counts: dict[str, np.ndarray]  # characteristic -> (bins,) ground-truth instances
    false_negatives: dict[str, np.ndarray]  # characteristic -> (bins,) false-negative rate, NaN for an empty bin

    def to_json(self) -> dict:
        fp = self.false_positives
        blocks = [f"{b + 1}G" for b in range(len(fp.block_sizes))]

        def shares(table: np.ndarray) -> dict:
            return {name: dict(zip(ERROR_TYPES, map(float, row))) for name, row in zip(blocks, table)}

        def per_bin(name: str, values: np.ndarray, key: str) -> dict:
            b = self.bins[name]
            return {
                label: {
                    key: _finite_or_none(v),
                    "num_ground_truth": int(n),
                    "range": [_finite_or_none(b.edges[i]), _finite_or_none(b.edges[i + 1])],
                }
                for i, (label, v, n) in enumerate(zip(b.names, values, self.bin_counts[name]))
            }

        return {
            "tiou_thresholds": [float(t) for t in self.thresholds],
            "num_ground_truth": self.num_ground_truth,
            "num_classes": self.num_classes,
            "normalized_count": self.normalized_count,
            "bins": self.bins_name,
            "false_positives": {
                "profile": shares(fp.block_shares),
                "profile_top_kG": shares(fp.cumulative_shares),
                "predictions_per_block": dict(zip(blocks, map(int, fp.block_sizes))),
                "average_mAP_N": fp.average_map_n,
                "removal_gain": dict(zip(ERROR_TYPES[1:], map(float, fp.removal_gain))),
            },
            "sensitivity": {
                "average_mAP_N": self.average_map_n,
                **{name: per_bin(name, v, "average_mAP_N") for name, v in self.sensitivity.items()},
            },
            "false_negatives": {name: per_bin(name, v, "rate") for name, v in self.false_negatives.items()},
        }

    def format_summary(self) -> str:
        """A few readable lines: the profile at 1G, the removal gains, the sensitivity and false negatives."""
        fp = self.false_positives
        lines = [
            f"tIoU {', '.join(f'{t:.2f}' for t in self.thresholds)}; {self.num_ground_truth} instances, "
            f"{self.num_classes} classes; average-mAP_N {100 * self.average_map_n:.2f} "
            f"(top 10G: {100 * fp.average_map_n:.2f})"
        ]
        lines.append(
            "false-positive profile at 1G (%): "
            + ", ".join(f"{name} {100 * v:.1f}" for name, v in zip(ERROR_TYPES, fp.block_shares[0]))
        )
        lines.append(
            "average-mAP_N gain when removed (points): "
            + ", ".join(f"{name} {100 * v:.2f}" for name, v in zip(ERROR_TYPES[1:], fp.removal_gain))
        )
        for title, table in (("average-mAP_N (%)", self.sensitivity), ("false negatives (%)", self.false_negatives)):
            for name, values in table.items():
                cells = ", ".join(
                    f"{label} {'-' if math.isnan(v) else f'{100 * v:.1f}'}"
                    for label, v in zip(self.bins[name].names, values)
                )
                lines.append(f"{title} by {name}: {cells}")
        return "\n".join(lines)


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN or infinity: an empty bin's value and an open bin edge are written as null."""
    return float(x) if math.isfinite(x) else None


def diagnose(
    ground_truth: Mapping,
    predictions: Mapping,
    subset: str,
    tiou_thresholds: Sequence[float] = (0.5,),
    bins: str = "thumos14",
    min_tiou: float = MIN_TIOU,
) -> Diagnosis:
    """Run the three analyses of ``predictions`` against the cleaned ground truth of ``subset``; ``bins`` names
    the bin edges of :data:`CHARACTERISTIC_BINS`."""
    thresholds = check_thresholds(tiou_thresholds)
    if bins not in CHARACTERISTIC_BINS:
        raise ValueError(f"bins must be one of {sorted(CHARACTERISTIC_BINS)}, got {bins!r}")
    if not 0 < min_tiou <= thresholds.min():
        raise ValueError(f"min_tiou must lie in (0, lowest threshold {thresholds.min()}], got {min_tiou}")
    gt = GroundTruth.from_annotations(ground_truth, subset)
    matching = match(gt, Predictions.from_results(predictions, gt, "predictions"), thresholds)
    normalized_count = len(gt.labels) / gt.num_classes
    edges = CHARACTERISTIC_BINS[bins]
    values = characteristics(gt)
    assigned = {name: edges[name].assign(values[name]) for name in CHARACTERISTICS}
    if np.isnan(values["coverage"]).any():
        missing = sorted({gt.videos[v] for v in gt.video[np.isnan(values["coverage"])]})
        raise DataError(
            f"ground truth: video {missing[0]!r} has no 'duration' (needed for the coverage of its "
            f"actions; {len(missing)} such video(s))"
        )
    return Diagnosis(
        thresholds=thresholds,
        num_ground_truth=len(gt.labels),
        num_classes=gt.num_classes,
        normalized_count=normalized_count,
        bins_name=bins,
        bins=edges,
        false_positives=false_positive_analysis(error_types(gt, matching, min_tiou), matching, normalized_count),
        average_map_n=float(np.nanmean(class_average_map_n(matching, normalized_count))),
        sensitivity={
            name: sensitivity(matching, gt.labels, assigned[name], len(edges[name].names), normalized_count)
            for name in CHARACTERISTICS
        },
        bin_counts={name: np.bincount(b[b >= 0], minlength=len(edges[name].names)) for name, b in assigned.items()},
        false_negatives={
            name: false_negative_rates(matching, assigned[name], len(edges[name].names), normalized_count)
            for name in CHARACTERISTICS
        },
    )
