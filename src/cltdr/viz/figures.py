"""Timeline, classification score vs tIoU (the paper's Figure 5), and precision/recall figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps

from cltdr.viz.canvas import new_figure, save_png
from cltdr.viz.points import ScorePoints, Timeline


def _class_colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_timeline(t: Timeline, path: str | os.PathLike) -> Path:
    """One lane per class, top to bottom: its ground truth (solid) above its detections (shaded by score,
    score written), overlapping detections on separate rows."""
    rows = [1 + int(t.det_row[t.det_lane == k].max(initial=0)) for k in range(len(t.classes))]  # detection rows
    top = np.cumsum([0] + [1 + r for r in rows])  # (lanes + 1,) first row of each lane
    fig = new_figure(12, 1.2 + 0.45 * max(int(top[-1]), 1))
    ax = fig.add_subplot()
    colors = _class_colors(max(len(t.classes), 1))
    for (start, end), lane in zip(t.gt, t.gt_lane):
        ax.broken_barh([(start, end - start)], (top[lane] + 0.1, 0.8), color=colors[lane])
    for (start, end), lane, row, score in zip(t.det, t.det_lane, t.det_row, t.det_score):
        y = top[lane] + 1 + row
        ax.broken_barh(
            [(start, end - start)],
            (y + 0.1, 0.8),
            facecolor=colors[lane],
            alpha=0.25 + 0.75 * float(np.clip(score, 0, 1)),
            edgecolor="black",
            linewidth=0.4,
        )
        ax.text((start + end) / 2, y + 0.5, f"{score:.2f}", ha="center", va="center", fontsize=7)
    for y in top[1:-1]:
        ax.axhline(y, color="gray", linewidth=0.5)
    ax.set_yticks([y + 0.5 for k in range(len(t.classes)) for y in (top[k], top[k] + 1)])
    ax.set_yticklabels([f"{name} {row}" for name in t.classes for row in ("GT", "pred")], fontsize=8)
    ax.set_xlim(0, t.duration)
    ax.set_ylim(top[-1], 0)  # first lane at the top
    ax.set_xlabel("time (s)")
    ax.set_title(f"{t.video}: ground truth and the {len(t.det)} best detections")
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    return save_png(fig, path)


def plot_scores(points: ScorePoints, class_names: Sequence[str], title: str, path: str | os.PathLike) -> Path:
    """Each (step, class) point: tIoU of its decoded segment (x) against its score (y); the best-scored step of
    each class marked with a star; the diagonal is where classification and localization agree."""
    fig = new_figure(6.5, 6)
    ax = fig.add_subplot()
    labels = list(np.unique(points.label))
    colors = _class_colors(len(labels))
    best = points.best()
    for color, k in zip(colors, labels):
        mine = points.label == k
        ax.scatter(points.tiou[mine], points.score[mine], s=6, color=color, alpha=0.5, label=class_names[k])
        i = best[int(k)]
        ax.scatter([points.tiou[i]], [points.score[i]], marker="*", s=260, color=color, edgecolor="black", zorder=3)
        ax.annotate(
            f"score {points.score[i]:.2f}, tIoU {points.tiou[i]:.2f}",
            (points.tiou[i], points.score[i]),
            textcoords="offset points",
            xytext=(8, -12),
            fontsize=8,
        )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("tIoU with the best-matching ground truth of the class")
    ax.set_ylabel("classification score")
    ax.set_title(title)
    if labels:
        ax.legend(loc="upper left", fontsize=8)
    return save_png(fig, path)


def plot_pr(
    precision: np.ndarray,
    recall: np.ndarray,
    ap: np.ndarray,
    thresholds: np.ndarray,
    title: str,
    path: str | os.PathLike,
) -> Path:
    """Precision against recall of one class, one curve (M, n) per threshold, with its AP in the legend."""
    fig = new_figure(6, 5)
    ax = fig.add_subplot()
    for p, r, a, t in zip(precision, recall, ap, thresholds):
        ax.step(
            np.r_[0.0, r], np.r_[p[:1], p] if len(p) else [0.0], where="post", label=f"tIoU {t:.2f}: AP {100 * a:.1f}"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(linestyle=":", linewidth=0.5)
    ax.legend(loc="lower left", fontsize=8)
    return save_png(fig, path)
