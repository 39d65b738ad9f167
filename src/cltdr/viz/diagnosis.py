"""The DETAD-style figures: false-positive profile and removal gains, sensitivity, false-negative rates."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from cltdr.evaluation.diagnosis import ERROR_TYPES, Diagnosis
from cltdr.viz.canvas import CHARACTERISTIC_COLORS, ERROR_COLORS, new_figure, save_png

_NAMES = {"coverage": "Coverage", "length": "Length", "num_instances": "# Instances"}


def plot_false_positives(d: Diagnosis, path: str | os.PathLike) -> Path:
    """Left: stacked shares of the error types per block of G predictions; right: the average-mAP_N gain of
    removing each false-positive type."""
    fp = d.false_positives
    fig = new_figure(12, 4.6)
    grid = fig.add_gridspec(1, 5, wspace=0.9)
    ax = fig.add_subplot(grid[0, :3])
    x = np.arange(len(fp.block_sizes))
    bottom = np.zeros(len(x))
    for name, color, share in zip(ERROR_TYPES, ERROR_COLORS, fp.block_shares.T):
        ax.bar(x, 100 * share, bottom=bottom, color=color, label=name.replace("_", " "), width=0.85)
        bottom += 100 * share
    ax.set_xticks(x)
    ax.set_xticklabels([f"{b + 1}G" for b in x])
    ax.set_ylim(0, 100)
    ax.set_xlabel("top predictions (blocks of G per class)")
    ax.set_ylabel("error breakdown (%)")
    ax.set_title("false-positive profile")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8)

    ax = fig.add_subplot(grid[0, 3:])
    gains = 100 * fp.removal_gain
    bars = ax.bar(np.arange(len(gains)), gains, color=ERROR_COLORS[1:])
    for bar, g in zip(bars, gains):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{g:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(gains)))
    ax.set_xticklabels([n.replace("_", " ") for n in ERROR_TYPES[1:]], fontsize=8, rotation=30, ha="right")
    ax.set_ylim(0, max(1.0, 1.15 * float(np.max(gains, initial=0))))
    ax.set_ylabel("average-mAP$_N$ improvement (%)")
    ax.set_title("removing each error type")
    return save_png(fig, path)


def _plot_by_characteristic(
    d: Diagnosis, table: dict[str, np.ndarray], ylabel: str, title: str, baseline: float | None, path: str | os.PathLike
) -> Path:
    """Bars per bin, grouped by characteristic; empty bins are left blank."""
    fig = new_figure(11, 4.2)
    ax = fig.add_subplot()
    x0, ticks, labels = 0, [], []
    for color, (name, values) in zip(CHARACTERISTIC_COLORS, table.items()):
        names = d.bins[name].names
        x = x0 + np.arange(len(names))
        heights = np.nan_to_num(100 * values)
        bars = ax.bar(x, heights, color=color)
        for bar, v in zip(bars, values):
            text = "-" if math.isnan(v) else f"{100 * v:.1f}"
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, text, ha="center", fontsize=8)
        ax.text(x0 + (len(names) - 1) / 2, 110, _NAMES.get(name, name), ha="center", fontsize=10)
        ticks += list(x)
        labels += [f"{label}\n({n})" for label, n in zip(names, d.bin_counts[name])]
        x0 += len(names) + 1
    if baseline is not None:
        ax.axhline(100 * baseline, linestyle="--", color="black", linewidth=1)
        ax.text(x0 - 1.5, 100 * baseline + 1.5, f"{100 * baseline:.2f}", fontsize=8)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.set_ylim(0, 118)
    ax.set_ylabel(ylabel)
    ax.set_title(title, pad=18)
    return save_png(fig, path)


def plot_sensitivity(d: Diagnosis, path: str | os.PathLike) -> Path:
    return _plot_by_characteristic(
        d,
        d.sensitivity,
        "average-mAP$_N$ (%)",
        f"sensitivity to action characteristics (tIoU {', '.join(f'{t:.2f}' for t in d.thresholds)}; dashed: all; "
        "bin: instances)",
        d.average_map_n,
        path,
    )


def plot_false_negatives(d: Diagnosis, path: str | os.PathLike) -> Path:
    return _plot_by_characteristic(
        d,
        d.false_negatives,
        "false negatives (%)",
        "share of the ground truth never detected (bin: instances)",
        None,
        path,
    )
