"""Slow, obviously-correct references for the evaluation suite: plain Python loops, one prediction and one
ground truth at a time, written from the ActivityNet (eval_detection, eval_proposal) and DETAD procedures.

Inputs are the cleaned ground truth rows ``[(video, start, end, label)]`` (cleaning is tested on its own in
test_map.py) and prediction rows ``[(video, start, end, label, score)]`` in file order. Only the ranking calls
numpy (``argsort()[::-1]``), so that equal scores break ties as ActivityNet does. Used by the tests and by
``bench/bench_eval.py``.
"""

from __future__ import annotations

import math

import numpy as np

from cltdr.evaluation import clean_ground_truth

ERROR_TYPES = ("true_positive", "double_detection", "wrong_label", "localization", "confusion", "background")


def gt_rows(ground_truth: dict, subset: str) -> list[tuple]:
    return [(v, s, e, lab) for v, segs in clean_ground_truth(ground_truth, subset).items() for s, e, lab in segs]


def pred_rows(predictions: dict) -> list[tuple]:
    return [
        (v, float(p["segment"][0]), float(p["segment"][1]), p.get("label"), p["score"])
        for v, entries in predictions["results"].items()
        for p in entries
    ]


def tiou(a: tuple, b: tuple) -> float:
    """tIoU of prediction ``a`` = (start, end) with ground truth ``b``, in ActivityNet's operation order."""
    inter = max(min(a[1], b[1]) - max(a[0], b[0]), 0.0)
    union = (b[1] - b[0]) + (a[1] - a[0]) - inter
    return inter / union


def ranking(scores: list[float]) -> list[int]:
    return list(np.array(scores, dtype=float).argsort()[::-1])


def match_class(gts: list[tuple], preds: list[tuple], thresholds) -> tuple[list[int], list[list[int]]]:
    """One class: ``gts`` [(gt id, video, start, end)], ``preds`` [(pred id, video, start, end, score)].
    Returns the prediction ids in rank order and, per threshold, the gt id each of them matched (-1: none)."""
    ranked = [preds[i] for i in ranking([p[4] for p in preds])]
    taken = [set() for _ in thresholds]
    matched = [[-1] * len(ranked) for _ in thresholds]
    for r, (_, video, start, end, _) in enumerate(ranked):
        mine = [g for g in gts if g[1] == video]
        ious = [tiou((start, end), (g[2], g[3])) for g in mine]
        walk = list(np.array(ious).argsort()[::-1]) if mine else []
        for t, thr in enumerate(thresholds):
            for j in walk:
                if ious[j] < thr:
                    break
                if mine[j][0] in taken[t]:
                    continue
                taken[t].add(mine[j][0])
                matched[t][r] = mine[j][0]
                break
    return [p[0] for p in ranked], matched


def ap_from_flags(flags: list[bool], num_gt: int, normalized_count: float | None = None) -> float:
    """Interpolated AP of one class from its true-positive flags in rank order (AP_N with normalized_count)."""
    precision, recall, tp, fp = [], [], 0, 0
    for flag in flags:
        tp, fp = tp + flag, fp + (not flag)
        rec = tp / num_gt
        recall.append(rec)
        if normalized_count is None:
            precision.append(tp / (tp + fp))
        else:
            precision.append(rec * normalized_count / (rec * normalized_count + fp))
    mprec, mrec = [0.0] + precision + [0.0], [0.0] + recall + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


class Reference:
    """Everything the suite computes, the slow way, for one (ground truth, predictions, thresholds) case."""

    def __init__(self, gt: list[tuple], preds: list[tuple], thresholds):
        self.gt, self.thresholds = gt, list(thresholds)
        self.classes = sorted({g[3] for g in gt})
        self.preds = [p for p in preds if p[3] in self.classes]  # others are ignored
        self.num_gt = {c: sum(g[3] == c for g in gt) for c in self.classes}
        self.ranked: dict[str, list[int]] = {}  # class -> prediction ids (index into self.preds) in rank order
        self.matched: dict[int, list[int]] = {}  # prediction id -> matched gt id per threshold
        for c in self.classes:
            gts = [(i, g[0], g[1], g[2]) for i, g in enumerate(gt) if g[3] == c]
            mine = [(i, p[0], p[1], p[2], p[4]) for i, p in enumerate(self.preds) if p[3] == c]
            self.ranked[c], matched = match_class(gts, mine, self.thresholds)
            for r, pid in enumerate(self.ranked[c]):
                self.matched[pid] = [matched[t][r] for t in range(len(self.thresholds))]

    # ------------------------------------------------------------------------------------------- mAP, recall
    def flags(self, c: str, t: int, keep=lambda pid: True) -> list[bool]:
        return [self.matched[pid][t] >= 0 for pid in self.ranked[c] if keep(pid)]

    def ap(self) -> np.ndarray:
        return np.array(
            [
                [ap_from_flags(self.flags(c, t), self.num_gt[c]) for c in self.classes]
                for t in range(len(self.thresholds))
            ]
        )

    def recall_at(self, k: int) -> list[float]:
        return [
            sum(sum(self.flags(c, t)[: k * self.num_gt[c]]) for c in self.classes) / len(self.gt)
            for t in range(len(self.thresholds))
        ]

    # ------------------------------------------------------------------------------------------------- DETAD
    @property
    def normalized_count(self) -> float:
        return len(self.gt) / len(self.classes)

    def error_type(self, pid: int, t: int, min_tiou: float = 0.1) -> str:
        if self.matched[pid][t] >= 0:
            return "true_positive"
        video, start, end, label, _ = self.preds[pid]
        best, best_label = -1.0, None
        for g in self.gt:  # file order: the first of equal maxima wins, as numpy's argmax
            if g[0] == video and tiou((start, end), (g[1], g[2])) > best:
                best, best_label = tiou((start, end), (g[1], g[2])), g[3]
        if best >= self.thresholds[t]:
            return "double_detection" if best_label == label else "wrong_label"
        if best >= min_tiou:
            return "localization" if best_label == label else "confusion"
        return "background"

    def fp_profile(self, blocks: int = 10) -> list[dict[str, float]]:
        """Per block b: the share of each type among predictions ranked in [b G_c, (b + 1) G_c) of their class."""
        out = []
        for b in range(blocks):
            members = [
                pid for c in self.classes for pid in self.ranked[c][b * self.num_gt[c] : (b + 1) * self.num_gt[c]]
            ]
            shares = {name: 0.0 for name in ERROR_TYPES}
            for t in range(len(self.thresholds)):
                for pid in members:
                    shares[self.error_type(pid, t)] += 1 / len(members) / len(self.thresholds)
            out.append(shares)
        return out

    def mean_ap_n(self, limit: int | None = None, drop: str | None = None) -> float:
        """Average-mAP_N over thresholds and classes, each class limited to its best limit x G_c predictions,
        without the false positives of type ``drop``."""
        values = []
        for c in self.classes:
            ids = self.ranked[c][: limit * self.num_gt[c]] if limit else self.ranked[c]
            for t in range(len(self.thresholds)):
                flags = [self.matched[pid][t] >= 0 for pid in ids if drop is None or self.error_type(pid, t) != drop]
                values.append(ap_from_flags(flags, self.num_gt[c], self.normalized_count))
        return sum(values) / len(values)

    def removal_gain(self, error_type: str) -> float:
        return self.mean_ap_n(10, error_type) - self.mean_ap_n(10)

    def characteristic(self, name: str, gt_index: int, durations: dict[str, float]) -> float:
        video, start, end, label = self.gt[gt_index]
        if name == "length":
            return end - start
        if name == "coverage":
            return (end - start) / durations[video]
        return float(sum(g[0] == video and g[3] == label for g in self.gt))

    def sensitivity(self, in_bin: list[bool]) -> float:
        """Average-mAP_N of the ground truth flagged ``in_bin``; NaN when none is."""
        values = []
        for c in self.classes:
            num = sum(flag and g[3] == c for flag, g in zip(in_bin, self.gt))
            if num == 0:
                continue

            def keep(pid):
                return all(m < 0 or in_bin[m] for m in self.matched[pid])

            per_threshold = [
                ap_from_flags(self.flags(c, t, keep), num, self.normalized_count) for t in range(len(self.thresholds))
            ]
            values.append(sum(per_threshold) / len(per_threshold))
        return sum(values) / len(values) if values else math.nan

    def false_negative_rate(self, in_bin: list[bool], min_precision: float = 0.05) -> float:
        if not any(in_bin):
            return math.nan
        rates = []
        for t in range(len(self.thresholds)):
            found = set()
            for c in self.classes:
                tp = fp = 0
                for pid in self.ranked[c]:
                    hit = self.matched[pid][t] >= 0
                    tp, fp = tp + hit, fp + (not hit)
                    rec = tp / self.num_gt[c]
                    if hit and rec * self.normalized_count / (rec * self.normalized_count + fp) > min_precision:
                        found.add(self.matched[pid][t])
            members = [i for i, flag in enumerate(in_bin) if flag]
            rates.append(sum(i not in found for i in members) / len(members))
        return sum(rates) / len(rates)


def reference_average_recall(gt: list[tuple], preds: list[tuple], thresholds, max_avg: float = 100):
    """ActivityNet's average_recall_vs_avg_nr_proposals, loop by loop: (recall (M, 100), AN (100,))."""
    videos = list(dict.fromkeys(g[0] for g in gt))
    preds = [p for p in preds if p[0] in videos]
    if not preds:
        return np.zeros((len(thresholds), 100)), np.zeros(100)
    ratio = max_avg * float(len(videos)) / len(preds)
    scores, total = [], 0
    for video in videos:
        mine_gt = [g for g in gt if g[0] == video]
        mine = [p for p in preds if p[0] == video]
        if not mine:
            scores.append((len(mine_gt), []))
            continue
        ordered = [mine[i] for i in ranking([p[4] for p in mine])]
        n = min(int(len(ordered) * ratio), len(ordered))
        total += n
        ordered = ordered[:n]
        scores.append((len(mine_gt), [[tiou((p[1], p[2]), (g[1], g[2])) for p in ordered] for g in mine_gt]))
    recall = np.zeros((len(thresholds), 100))
    if total == 0:  # no video keeps a proposal (ActivityNet divides by zero here)
        return recall, np.zeros(100)
    shares = np.arange(1, 101) / 100.0 * (max_avg * float(len(videos)) / total)
    for m, thr in enumerate(thresholds):
        for j, share in enumerate(shares):
            found = 0
            for num, rows in scores:
                kept = len(rows[0]) if rows else 0
                used = min(int(kept * share), kept)
                found += sum(any(x >= thr for x in row[:used]) for row in rows)
            recall[m, j] = found / len(gt)
    return recall, shares * (float(total) / len(videos))
