"""Optional post-processing: fuse detections with external video-level class scores (ActionFormer / TriDet on
ActivityNet-1.3 and HACS).

A class-agnostic detector finds *where* actions are; a video classifier (e.g. the CUHK scores released with
ActionFormer) says *which* classes the video shows. For each video, the ``max_segments`` highest-scoring
detections are repeated for the video's ``topk`` classes, each copy scored ``detection score x class score``.
(ActionFormer writes the square root of that product; the square root keeps every ranking, so the mAP is the
same.) Without fusion, a class-agnostic model is evaluated against the ground truth with every label merged into
its one class (class-agnostic mAP). `cltdr test` reports both when ``dataset.fusion`` is set.

Dimension letters: K classes of the score file, D detections of one video.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cltdr.config import Config
from cltdr.data.build import class_names
from cltdr.errors import DataError
from cltdr.utils.io import read_json


@dataclass
class ClassScores:
    """Video-level class scores: ``scores[video_id]`` (K,) aligned with ``class_names`` (K,)."""

    class_names: list[str]
    scores: dict[str, np.ndarray]
    source: str

    def of(self, video_id: str) -> np.ndarray:
        """The (K,) scores of a video; ids are also tried with and without ActivityNet's ``v_`` prefix."""
        for key in (video_id, f"v_{video_id}", video_id.removeprefix("v_")):
            if key in self.scores:
                return np.asarray(self.scores[key], dtype=np.float64)
        raise DataError(
            f"class score file {self.source} has no scores for video {video_id!r} "
            f"({len(self.scores)} videos, e.g. {next(iter(self.scores))!r})"
        )


def load_class_scores(path: str | os.PathLike, class_names: list[str] | None = None) -> ClassScores:
    """Read ``{"results": {video: [K scores]}, "class": [K names]}`` (names may instead come from
    ``class_names``) or ``{"results": {video: {name: score}}}`` (``"results"`` may be left out)."""
    path = Path(path)
    data = read_json(path, "class score")
    results = data.get("results", data)
    names = data.get("class", class_names)
    if not isinstance(results, dict) or not results:
        raise DataError(f"class score file {path}: expected a non-empty mapping video id -> class scores")
    first = next(iter(results.values()))
    if isinstance(first, Mapping):  # {video: {name: score}}
        names = sorted({name for v in results.values() for name in v})
        results = {vid: [v.get(name, 0.0) for name in names] for vid, v in results.items()}
    if not names:
        raise DataError(f"class score file {path}: scores are lists but the file has no 'class' list of names")
    scores = {}
    for vid, values in results.items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (len(names),) or not np.isfinite(array).all():
            raise DataError(
                f"class score file {path}, video {vid!r}: expected {len(names)} finite scores, got shape {array.shape}"
            )
        scores[vid] = array
    return ClassScores(list(names), scores, str(path))


def fuse_detections(
    results: Mapping[str, list[dict[str, Any]]], scores: ClassScores, *, topk: int = 2, max_segments: int = 200
) -> dict[str, list[dict[str, Any]]]:
    """ActivityNet result entries -> the same videos with each kept segment repeated for the top-k classes,
    scored detection score x class score, sorted by score."""
    fused = {}
    for video_id, entries in results.items():
        kept = sorted(entries, key=lambda e: -e["score"])[:max_segments]  # D entries
        class_scores = scores.of(video_id)  # (K,)
        top = np.argsort(-class_scores, kind="stable")[:topk]
        out = [
            {
                "label": scores.class_names[k],
                "score": float(e["score"] * class_scores[k]),
                "segment": list(e["segment"]),
            }
            for k in top
            for e in kept
        ]
        fused[video_id] = sorted(out, key=lambda e: -e["score"])
    return fused


def evaluation_ground_truth(cfg: Config, gt: dict[str, Any]) -> dict[str, Any]:
    """The ground truth a model's own predictions are scored against: as is, or with every label replaced by
    the one class of a class-agnostic model."""
    if not cfg.dataset.class_agnostic:
        return gt
    (name,) = class_names(cfg)
    merged = copy.deepcopy(gt)
    for entry in merged.get("database", {}).values():
        for ann in entry.get("annotations", []) if isinstance(entry, dict) else []:
            if isinstance(ann, dict):
                ann["label"] = name
    return merged
