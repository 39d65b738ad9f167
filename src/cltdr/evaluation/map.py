"""ActivityNet-style detection mAP (SPEC section 3), vectorised with numpy.

The numbers agree with ActivityNet's ``Evaluation/eval_detection.py`` (``ANETdetection``,
``compute_average_precision_detection``, ``interpolated_prec_rec``), tie-breaking included (the matching rules
are in :mod:`cltdr.evaluation.matching`): a prediction whose label is not a ground-truth class is ignored; AP is
the area under the precision envelope (monotone from the right) summed over recall steps; a class without
predictions gets AP 0; mAP averages over the classes of the (cleaned) ground truth.

Besides AP, the result carries the recall reached by the best ``k x G_c`` predictions of every class ``c``
(``G_c`` its ground-truth instances): how many of the actions a model finds within a budget proportional to
how many there are.

Dimension letters: M tIoU thresholds, K classes, J recall budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from cltdr.evaluation.inputs import (  # noqa: F401  (re-exported: the module's historical API)
    DUPLICATE_TOL_S,
    MIN_SEGMENT_S,
    GroundTruth,
    Predictions,
    clean_ground_truth,
    validate_predictions,
)
from cltdr.evaluation.matching import Matching, interpolated_ap, match

RECALL_BUDGETS = (1, 5, 10)  # k of the recall at k x G reported by default


def threshold_key(t: float) -> str:
    """How a tIoU threshold is written as a JSON key: two decimals, or three where two would round it."""
    return f"{t:.2f}" if abs(round(t, 2) - t) < 1e-9 else f"{t:.3f}"


@dataclass
class MapResult:
    """AP per threshold and class; ``mAP`` and ``average_mAP`` are derived from it."""

    tiou_thresholds: np.ndarray  # (M,)
    class_names: list[str]  # (K,) classes of the cleaned ground truth, sorted by name
    ap: np.ndarray  # (M, K)
    num_ground_truth: np.ndarray  # (K,) cleaned ground-truth instances per class
    recall_budgets: tuple[int, ...] = ()  # (J,) the k of recall at k x G
    recall: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (J, M) recall at k x G

    @property
    def mAP(self) -> np.ndarray:
        """(M,) mean AP over the ground-truth classes, per threshold."""
        return self.ap.mean(axis=1)

    @property
    def average_mAP(self) -> float:
        """mAP averaged over the thresholds."""
        return float(self.mAP.mean())

    def to_json(self) -> dict:
        keys = [threshold_key(t) for t in self.tiou_thresholds]
        out = {
            "mAP": {key: float(m) for key, m in zip(keys, self.mAP)},
            "average_mAP": self.average_mAP,
            "per_class_ap": {
                name: {key: float(a) for key, a in zip(keys, self.ap[:, k])} for k, name in enumerate(self.class_names)
            },
        }
        if self.recall_budgets:
            out["recall_at_kG"] = {
                f"{k}G": {key: float(r) for key, r in zip(keys, row)}
                for k, row in zip(self.recall_budgets, self.recall)
            }
        return out

    def format_table(self, columns: Sequence[float] | None = None) -> str:
        """Aligned rows: the thresholds, mAP in % (with the average in the last column), and the recall at each
        k x G. ``columns`` picks the thresholds shown (all by default; the average always covers all)."""
        shown = [i for i, t in enumerate(self.tiou_thresholds) if columns is None or _contains(columns, t)]
        rows = [["tIoU"] + [f"{self.tiou_thresholds[i]:.2f}" for i in shown] + ["Avg"]]
        rows.append(["mAP (%)"] + [f"{100 * self.mAP[i]:.2f}" for i in shown] + [f"{100 * self.average_mAP:.2f}"])
        for k, row in zip(self.recall_budgets, self.recall):
            rows.append([f"R@{k}G (%)"] + [f"{100 * row[i]:.2f}" for i in shown] + [f"{100 * row.mean():.2f}"])
        return format_rows(rows)

    def format_per_class(self) -> str:
        """One row per class: its AP (%) at each threshold, its average, and its number of instances."""
        rows = [["class"] + [f"{t:.2f}" for t in self.tiou_thresholds] + ["Avg", "#GT"]]
        for k, name in enumerate(self.class_names):
            ap = self.ap[:, k]
            averages = [f"{100 * ap.mean():.2f}", str(self.num_ground_truth[k])]
            rows.append([name] + [f"{100 * a:.2f}" for a in ap] + averages)
        return format_rows(rows, left=1)


def format_rows(rows: list[list[str]], left: int = 0) -> str:
    """Rows of cells joined by `` | `` in aligned columns; the first ``left`` columns are left-aligned."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        " | ".join(cell.ljust(w) if c < left else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths)))
        for r in rows
    )


def _contains(values: Sequence[float], t: float) -> bool:
    return any(abs(v - t) < 1e-9 for v in values)


def evaluate_map(
    ground_truth: Mapping,
    predictions: Mapping,
    subset: str,
    tiou_thresholds: Sequence[float],
    recall_budgets: Sequence[int] = RECALL_BUDGETS,
) -> MapResult:
    """ActivityNet detection mAP of ``predictions`` against the cleaned ground truth of ``subset``.

    ``ground_truth``: ``{"database": {video: {"subset", "annotations": [{"label", "segment"}]}}}`` or the
    inner mapping. ``predictions``: ``{"results": {video: [{"label", "score", "segment"}]}}`` or the inner
    mapping.
    """
    thresholds = check_thresholds(tiou_thresholds)
    gt = GroundTruth.from_annotations(ground_truth, subset)
    pred = Predictions.from_results(predictions, gt, "predictions")
    return map_from_matching(match(gt, pred, thresholds), gt.class_names, recall_budgets)


def check_thresholds(tiou_thresholds: Sequence[float]) -> np.ndarray:
    """(M,) thresholds as an array; ValueError unless a non-empty list of numbers in [0, 1]."""
    thresholds = np.asarray(tiou_thresholds, dtype=float)
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise ValueError(f"tiou_thresholds must be a non-empty list of numbers in [0, 1], got {tiou_thresholds!r}")
    return thresholds


def map_from_matching(matching: Matching, class_names: list[str], recall_budgets: Sequence[int] = ()) -> MapResult:
    """AP per class and threshold, and the recall at each ``k x G``, from a :class:`Matching`."""
    tp, num_gt = matching.tp, matching.num_gt
    ap = np.zeros((len(matching.thresholds), len(class_names)))  # (M, K)
    for k in range(len(class_names)):
        ap[:, k] = interpolated_ap(tp[:, matching.class_slice(k)], num_gt[k])
    budget = num_gt[matching.predictions.labels]  # (N,) G of each prediction's class
    recall = np.array([(tp & (matching.rank < k * budget)).sum(axis=1) / num_gt.sum() for k in recall_budgets]).reshape(
        len(recall_budgets), len(matching.thresholds)
    )  # (J, M)
    return MapResult(matching.thresholds, class_names, ap, num_gt, tuple(recall_budgets), recall)
