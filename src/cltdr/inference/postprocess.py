"""From per-level predictions of one video to ActivityNet-style detections.

Shapes: L levels, T_l valid steps of level l (no padding), K classes, N candidates, D detections.
Inputs per level: ``scores`` (T_l, K) class probabilities (the model has applied the sigmoid) and
``segments`` decoded ``[start, end]`` in grid units (fractional feature index of the input sequence), either
(T_l, 2) shared by all classes or (T_l, K, 2) class-wise (a Trident head's boundaries are per class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cltdr.config import PRESETS, PostprocessOptions  # noqa: F401  (the options of this module, stated in the config)
from cltdr.data.grid import FeatureGrid
from cltdr.ops.nms import soft_nms


@dataclass
class Detections:
    """Detections of one video: segments (D, 2) ``[start, end]``, scores (D,), labels (D,) int64 class ids."""

    segments: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]

    @staticmethod
    def cat(parts: list[Detections]) -> Detections:
        return Detections(*(torch.cat(column) for column in zip(*((d.segments, d.scores, d.labels) for d in parts))))

    def __getitem__(self, keep: Tensor) -> Detections:
        return Detections(self.segments[keep], self.scores[keep], self.labels[keep])


@torch.no_grad()
def select_candidates(scores: list[Tensor], segments: list[Tensor], opts: PostprocessOptions) -> Detections:
    """Pre-NMS candidates of one video: per level, every (step, class) pair whose probability is above
    ``opts.score_threshold``, the ``opts.pre_nms_topk`` best of them, each with its step's segment (one step may
    yield several classes), minus segments shorter than ``opts.min_segment_length``; levels concatenated."""
    if len(scores) != len(segments):
        raise ValueError(f"got scores for {len(scores)} levels but segments for {len(segments)}")
    if not scores:
        raise ValueError("select_candidates needs at least one level, got none")
    out_seg, out_score, out_label = [], [], []
    for level, (prob, seg) in enumerate(zip(scores, segments)):
        if prob.dim() != 2 or seg.shape not in ((prob.shape[0], 2), (*prob.shape, 2)):
            raise ValueError(
                f"level {level}: expected scores (T, K) and segments (T, 2) or (T, K, 2) with the same T, "
                f"got {tuple(prob.shape)} and {tuple(seg.shape)}"
            )
        num_classes = prob.shape[1]
        flat = prob.flatten()  # (T*K,) index = step * K + class
        above = (flat > opts.score_threshold).nonzero().squeeze(1)  # (n,)
        order = flat[above].argsort(descending=True, stable=True)[: opts.pre_nms_topk]  # (n',) ties: lower index
        pick = above[order]  # (n',)
        step, label = pick // num_classes, pick % num_classes  # (n',), (n',)
        cand = seg[step] if seg.dim() == 2 else seg[step, label]  # (n', 2)
        long_enough = (cand[:, 1] - cand[:, 0]) >= opts.min_segment_length  # (n',)
        out_seg.append(cand[long_enough])
        out_score.append(flat[pick][long_enough])
        out_label.append(label[long_enough])
    return Detections(torch.cat(out_seg), torch.cat(out_score), torch.cat(out_label))


def suppress(cand: Detections, opts: PostprocessOptions) -> Detections:
    """Candidates of one video -> its final detections: Soft-NMS, then the per-class and per-video limits."""
    seg, score, label = soft_nms(
        cand.segments,
        cand.scores,
        cand.labels,
        sigma=opts.nms_sigma,
        min_score=opts.score_threshold,
        max_detections=opts.max_detections if opts.max_per_class is None else len(cand),
        voting_iou=opts.voting_iou,
        voting_weight=opts.voting_weight,
        class_agnostic=opts.class_agnostic_nms,
    )
    if opts.max_per_class is not None:  # detections come sorted by score: keep each class's first ones
        keep = (_rank_within_label(label) < opts.max_per_class).nonzero().squeeze(1)[: opts.max_detections]
        seg, score, label = seg[keep], score[keep], label[keep]
    return Detections(seg, score, label)


def postprocess_video(scores: list[Tensor], segments: list[Tensor], opts: PostprocessOptions) -> Detections:
    """Per-level predictions of one video -> its final detections in grid units (candidates, then Soft-NMS)."""
    return suppress(select_candidates(scores, segments, opts), opts)


def _rank_within_label(labels: Tensor) -> Tensor:
    """(D,) how many earlier entries carry the same label."""
    order = labels.argsort(stable=True)  # (D,) grouped by label, original order inside a group
    grouped = labels[order]
    first = torch.searchsorted(grouped, grouped)  # (D,) start of each entry's group
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels), device=labels.device) - first
    return rank


def to_results(detections: Detections, grid: FeatureGrid, duration: float, class_names: list[str]) -> list[dict]:
    """Detections in grid units -> ActivityNet result entries ``{"label", "score", "segment": [s, e]}``.

    Segments are converted with ``grid.to_seconds`` and clipped to ``[0, duration]``; entries that collapse to
    zero length after clipping are dropped. Values are plain Python floats, so the list is JSON-serializable.
    """
    if len(detections) and int(detections.labels.max()) >= len(class_names):
        raise ValueError(
            f"detection label {int(detections.labels.max())} has no name: class_names holds {len(class_names)}"
        )
    seconds = grid.to_seconds(detections.segments.detach().double().cpu(), duration)  # (D, 2)
    results = []
    for (start, end), score, label in zip(seconds.tolist(), detections.scores.tolist(), detections.labels.tolist()):
        if end > start:
            results.append({"label": class_names[label], "score": float(score), "segment": [start, end]})
    return results
