"""Prediction files in other formats: CSV, SRT subtitles, and the input files of the DETAD diagnosis tool.

CSV: one row per detection, ``video,start,end,label,score``, videos in file order, each video's detections by
descending score. SRT: one video's detections as subtitles (``label (score)`` shown from start to end, in order
of start; players show overlapping cues together), to watch the actions on the video.
DETAD (github.com/HumamAlwassel/DETAD) reads an ActivityNet result file that must hold the
keys ``version``, ``results`` and ``external_data`` and only labels of the ground truth, and a ground-truth file
with ``database``, ``taxonomy`` and ``version`` whose annotations carry the action characteristics
``coverage``, ``length`` and ``num-instances`` (computed here as in :mod:`cltdr.evaluation.diagnosis`).
"""

from __future__ import annotations

import csv
import io
from typing import Mapping, Sequence

import numpy as np

from cltdr.evaluation.diagnosis import characteristics
from cltdr.evaluation.inputs import GroundTruth, flatten_predictions, result_file, subset_videos

CSV_HEADER = ("video", "start", "end", "label", "score")


def predictions_csv(predictions: Mapping, source: str = "predictions") -> str:
    """The CSV text of a result object (validated)."""
    videos, labels, scores, segments = flatten_predictions(predictions, source)
    order = np.lexsort((-scores, _first_seen(videos)))  # by video (file order), then by descending score
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for i in order:
        writer.writerow(
            (videos[i], repr(float(segments[i, 0])), repr(float(segments[i, 1])), labels[i], repr(float(scores[i])))
        )
    return out.getvalue()


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm``, an SRT timestamp."""
    ms = max(int(round(seconds * 1000)), 0)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def srt_text(entries: Sequence[Mapping]) -> str:
    """The SRT subtitles of one video's result entries (``{"label", "score", "segment"}``), by start time."""
    order = sorted(range(len(entries)), key=lambda i: (entries[i]["segment"][0], -entries[i]["score"]))
    cues = []
    for n, i in enumerate(order, 1):
        e = entries[i]
        start, end = e["segment"]
        cues.append(f"{n}\n{srt_time(start)} --> {srt_time(end)}\n{e['label']} ({e['score']:.2f})\n")
    return "\n".join(cues)


def _first_seen(videos: list[str]) -> np.ndarray:
    """(N,) index of each row's video in order of first appearance."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in videos], dtype=np.int64)


def detad_predictions(
    predictions: Mapping, gt: GroundTruth | None = None, source: str = "predictions"
) -> tuple[dict, int]:
    """DETAD's prediction file and the number of detections left out: with ``gt``, those whose label is not a
    ground-truth class or whose video is not in its subset (DETAD stops at an unknown label)."""
    videos, labels, scores, segments = flatten_predictions(predictions, source)
    classes, subset = (set(gt.class_names), set(gt.videos)) if gt is not None else (set(), set())
    results: dict[str, list[dict]] = {}
    dropped = 0
    for video, label, score, (start, end) in zip(videos, labels, scores.tolist(), segments.tolist()):
        if gt is not None and (label not in classes or video not in subset):
            dropped += 1
            continue
        results.setdefault(video, []).append({"label": label, "score": score, "segment": [start, end]})
    return result_file(results), dropped


def detad_ground_truth(ground_truth: Mapping, subset: str) -> dict:
    """DETAD's ground-truth file for the videos of ``subset``: the cleaned annotations with their coverage,
    length and number of instances; the subset name is written as the file spells it."""
    gt = GroundTruth.from_annotations(ground_truth, subset)
    entries = subset_videos(ground_truth, subset)
    values = characteristics(gt)
    database = {
        video: {"subset": entries[video]["subset"], "duration": entries[video].get("duration"), "annotations": []}
        for video in gt.videos
    }
    for i in range(len(gt.labels)):
        coverage = values["coverage"][i]
        database[gt.videos[gt.video[i]]]["annotations"].append(
            {
                "label": gt.class_names[gt.labels[i]],
                "segment": gt.segments[i].tolist(),
                "coverage": None if np.isnan(coverage) else float(coverage),
                "length": float(values["length"][i]),
                "num-instances": int(values["num_instances"][i]),
            }
        )
    taxonomy = [
        {"nodeName": name, "nodeId": k, "parentName": "root", "parentId": -1} for k, name in enumerate(gt.class_names)
    ]
    return {"version": "cltdr", "taxonomy": taxonomy, "database": database}
