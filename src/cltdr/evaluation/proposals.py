"""Average recall against the average number of proposals per video (AR@AN), class-agnostic.

As ActivityNet's ``Evaluation/eval_proposal.py`` (``average_recall_vs_avg_nr_proposals``): labels are ignored;
with V the videos that have ground truth and P their proposals, every video keeps its best
``int(P_v * ratio)`` proposals, ``ratio = max_avg * V / P``; the curve has 100 points, point ``j`` taking the
best ``int(n_v * f_j)`` kept proposals of each video (``f_j`` its share of the kept ones); a ground truth is
recalled at a threshold when one of those proposals reaches that tIoU with it (no one-to-one matching). AR
averages the recall over the thresholds; AUC is the area under AR(AN) divided by the largest AN.

Differences from ActivityNet's code: the ground truth is cleaned as for the mAP, only proposals on videos with
ground truth count (ActivityNet counts every proposal of the file in ``P``), and a video without proposals
recalls nothing even at tIoU 0.

Dimension letters: N proposals, G ground truth, V videos, M thresholds, J curve points (100), Q pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cltdr.evaluation.inputs import GroundTruth, Predictions
from cltdr.evaluation.map import format_rows, threshold_key
from cltdr.evaluation.matching import Groups, candidate_pairs, rank_within

CURVE_POINTS = 100
REPORTED_AN = (1, 5, 10, 50, 100)


@dataclass
class ProposalResult:
    thresholds: np.ndarray  # (M,)
    recall: np.ndarray  # (M, J) recall per threshold along the curve
    average_number: np.ndarray  # (J,) average number of proposals per video at each point
    max_average_number: float

    @property
    def average_recall(self) -> np.ndarray:
        """(J,) recall averaged over the thresholds."""
        return self.recall.mean(axis=0)

    @property
    def auc(self) -> float:
        """Area under AR(AN), divided by the largest AN (a share in [0, 1])."""
        x, y = self.average_number, self.average_recall
        if x[-1] <= 0:
            return 0.0
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / x[-1])

    def at(self, an: float) -> float:
        """AR at ``an`` proposals per video: the curve point ``an / max_avg`` of the way along it."""
        j = int(round(an / self.max_average_number * CURVE_POINTS)) - 1
        if not 0 <= j < CURVE_POINTS:
            raise ValueError(f"AN {an} is outside the curve (1 .. {self.max_average_number:g} proposals per video)")
        return float(self.average_recall[j])

    def reported(self) -> list[float]:
        """The AN of :data:`REPORTED_AN` that the curve reaches."""
        return [an for an in REPORTED_AN if an <= self.max_average_number]

    def to_json(self) -> dict:
        return {
            "tiou_thresholds": [float(t) for t in self.thresholds],
            **{f"AR@{an:g}": self.at(an) for an in self.reported()},
            "AUC": self.auc,
            "per_threshold_at_max": {threshold_key(t): float(r[-1]) for t, r in zip(self.thresholds, self.recall)},
            "curve": {"AN": self.average_number.tolist(), "AR": self.average_recall.tolist()},
        }

    def format_table(self) -> str:
        head = [f"AR@{an:g}" for an in self.reported()] + ["AUC"]
        row = [f"{100 * self.at(an):.2f}" for an in self.reported()] + [f"{100 * self.auc:.2f}"]
        return format_rows([["proposals"] + head, ["AR (%)"] + row])


def average_recall(
    gt: GroundTruth, pred: Predictions, thresholds: Sequence[float], max_average_number: float | None = 100
) -> ProposalResult:
    """The AR@AN curve of ``pred`` (labels ignored) against ``gt``; ``max_average_number`` None: all proposals."""
    tious = np.asarray(thresholds, dtype=float)
    V = len(gt.videos)
    has_gt = np.bincount(gt.video, minlength=V) > 0  # (V,)
    pred = pred.select((pred.video >= 0) & has_gt[pred.video.clip(min=0)])
    num_videos = int(has_gt.sum())
    total = len(pred)
    if max_average_number is None:
        max_average_number = total / num_videos
    recall = np.zeros((len(tious), CURVE_POINTS))
    if total == 0:
        return ProposalResult(tious, recall, np.zeros(CURVE_POINTS), float(max_average_number or 1))
    ratio = max_average_number * float(num_videos) / total
    per_video = np.bincount(pred.video, minlength=V)  # (V,)
    kept = np.minimum((per_video * ratio).astype(int), per_video)  # (V,)
    total_kept = int(kept.sum())
    shares = np.arange(1, CURVE_POINTS + 1) / 100.0 * (max_average_number * float(num_videos) / max(total_kept, 1))
    budget = np.minimum((kept[:, None] * shares[None]).astype(int), kept[:, None])  # (V, J) proposals used

    _, _, rank = rank_within(pred.video, pred.scores, V)  # (N,) rank inside its video
    used = rank < kept[pred.video]
    groups = Groups.of(gt.video)
    p_group = np.where(used, groups.find(pred.video), -1)
    pair_pred, pair_gt, pair_tiou = candidate_pairs(pred.segments, p_group, gt.segments, groups, tious.min())
    for m, t in enumerate(tious):
        hit = pair_tiou >= t  # (Q,)
        first = np.full(len(gt.labels), np.iinfo(np.int64).max)  # (G,) best rank of a proposal reaching t
        np.minimum.at(first, pair_gt[hit], rank[pair_pred[hit]])
        recall[m] = (first[:, None] < budget[gt.video]).sum(axis=0) / len(gt.labels)
    return ProposalResult(tious, recall, shares * (float(total_kept) / num_videos), float(max_average_number))
