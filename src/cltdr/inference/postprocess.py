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

from cltdr.data.grid import FeatureGrid
from cltdr.ops.nms import soft_nms


@dataclass(frozen=True)
class PostprocessOptions:
    """How raw predictions become detections (defaults: the THUMOS14 setting of the released code).

    score_threshold: candidates whose probability is not above this are dropped before NMS; Soft-NMS also
        drops detections whose decayed score falls below it.
    pre_nms_topk: at most this many (step, class) candidates are kept per pyramid level, highest first.
    min_segment_length: candidates shorter than this, in grid steps, are dropped before NMS.
    nms_sigma: width of the Gaussian Soft-NMS decay, ``score *= exp(-iou**2 / nms_sigma)``.
    voting_iou: score voting after Soft-NMS: each kept segment becomes the score x IoU weighted mean of the
        candidates of its class that overlap it by at least this IoU; None turns voting off.
    max_detections: at most this many detections per video are returned, highest scores first.
    max_per_class: at most this many detections per class and video (None: no limit), applied before
        ``max_detections``.
    class_agnostic_nms: when True a detection also decays (and votes with) candidates of other classes.

    Two presets (:data:`PRESETS`, :meth:`preset`): ``benchmark``, the defaults, keeps everything the mAP protocol
    rewards (a low threshold and thousands of detections per video: a low-ranked detection can only add recall);
    ``deployment`` returns what a person would read: scores above 0.2, at most 100 detections and 20 per
    class, stronger suppression of overlapping duplicates, no voting.
    """

    score_threshold: float = 1e-3
    pre_nms_topk: int = 2000
    min_segment_length: float = 0.05
    nms_sigma: float = 0.5
    voting_iou: float | None = 0.7
    max_detections: int = 2000
    max_per_class: int | None = None
    class_agnostic_nms: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must lie in [0, 1], got {self.score_threshold}")
        if self.pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be >= 1, got {self.pre_nms_topk}")
        if self.min_segment_length < 0:
            raise ValueError(f"min_segment_length must be >= 0, got {self.min_segment_length}")
        if not self.nms_sigma > 0:
            raise ValueError(f"nms_sigma must be > 0, got {self.nms_sigma}")
        if self.voting_iou is not None and not 0.0 <= self.voting_iou <= 1.0:
            raise ValueError(f"voting_iou must lie in [0, 1] or be None, got {self.voting_iou}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1 or None, got {self.max_per_class}")

    @classmethod
    def preset(cls, name: str, **overrides) -> PostprocessOptions:
        """The options of preset ``name`` (see :data:`PRESETS`), with ``overrides`` replacing some of them."""
        if name not in PRESETS:
            raise ValueError(f"unknown post-processing preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# benchmark: the defaults above (the released code's THUMOS14 setting). deployment: few, confident detections.
PRESETS: dict[str, dict] = {
    "benchmark": {},
    "deployment": dict(score_threshold=0.2, pre_nms_topk=500, nms_sigma=0.1, voting_iou=None, max_detections=100,
                       max_per_class=20),
}


@dataclass
class Detections:
    """Detections of one video: segments (D, 2) ``[start, end]``, scores (D,), labels (D,) int64 class ids."""

    segments: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]


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


def postprocess_video(scores: list[Tensor], segments: list[Tensor], opts: PostprocessOptions) -> Detections:
    """Per-level predictions of one video -> its final detections in grid units (candidates, then Soft-NMS)."""
    cand = select_candidates(scores, segments, opts)
    seg, score, label = soft_nms(
        cand.segments,
        cand.scores,
        cand.labels,
        sigma=opts.nms_sigma,
        min_score=opts.score_threshold,
        max_detections=opts.max_detections if opts.max_per_class is None else len(cand),
        voting_iou=opts.voting_iou,
        class_agnostic=opts.class_agnostic_nms,
    )
    if opts.max_per_class is not None:  # detections come sorted by score: keep each class's first ones
        keep = (_rank_within_label(label) < opts.max_per_class).nonzero().squeeze(1)[: opts.max_detections]
        seg, score, label = seg[keep], score[keep], label[keep]
    return Detections(seg, score, label)


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
