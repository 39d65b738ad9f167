"""The HTML report of a prediction file: one self-contained page a researcher opens in a browser (issue 16).

The page holds the mAP at every threshold, the AP and recall of every class (worst first), the DETAD-style
figures of :mod:`cltdr.evaluation.diagnosis`, and a timeline of every video of the subset: ground truth against
detections, each detection typed (true positive, double detection, wrong label, localization, confusion,
background; or a class the ground truth does not have) at one tIoU, with its tIoU to the ground truth it
refers to. Nothing is recomputed here: the numbers are those of :func:`~cltdr.evaluation.matching.match`,
:func:`~cltdr.evaluation.map.map_from_matching` (what ``evaluate_map`` returns), :func:`~cltdr.evaluation.
diagnosis.error_types` and :func:`~cltdr.evaluation.diagnosis.diagnose`.

Scale: an ActivityNet-sized file (5,000 videos, 500,000 detections) must open quickly, so the per-video data is
one columnar JSON object (integer arrays: times in centiseconds, scores in thousandths) in a
``<script type="application/json">`` that the page's script reads into typed arrays; the page draws only the
videos of the current page of the list, each on one canvas, never one DOM node per detection. The page uses no
network: its style, script, data and figures (PNG data URIs) are inline; a video file (``--videos``) is a
relative link.

Dimension letters: V videos of the subset, G ground-truth instances, N predictions of the file, D detections
shown (those in the subset's videos), K ground-truth classes, M mAP thresholds.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import quote

import numpy as np

from cltdr import __version__
from cltdr.errors import CltdrError, DataError
from cltdr.evaluation.diagnosis import ERROR_TYPES, MIN_TIOU, best_overlap, diagnose, error_types
from cltdr.evaluation.inputs import GroundTruth, Predictions, flatten_predictions
from cltdr.evaluation.map import RECALL_BUDGETS, MapResult, check_thresholds, map_from_matching
from cltdr.evaluation.matching import Matching, match, segment_iou
from cltdr.utils.io import atomic_write, read_json
from cltdr.viz.canvas import ERROR_COLORS

TEMPLATE = "report_template.html"  # package data beside this module
# A detection whose label is not a ground-truth class: the mAP ignores it, the page still shows it.
OTHER_CLASS = "other_class"
DETECTION_TYPES = (*ERROR_TYPES, OTHER_CLASS)
DETECTION_COLORS = (*ERROR_COLORS, "#999999")
TIME_SCALE = 100  # times are stored in centiseconds: a pixel of a 10-minute video at 1,000 px is 60 cs
SCORE_SCALE = 1000  # scores in thousandths, the step of the page's score threshold
TIOU_SCALE = 100  # tIoU floored to hundredths, so that a shown 0.50 always reaches a 0.5 threshold
# Extensions the page can play (what browsers decode; .mkv / .mov depend on the codec inside).
VIDEO_EXTENSIONS = (".mp4", ".webm", ".ogv", ".ogg", ".m4v", ".mov", ".mkv")
_OVERLAP_EPS = 1e-9  # any positive overlap counts for the tIoU shown on hover


@dataclass
class ReportData:
    """What the page embeds: ``summary`` (small: tables, diagnosis, figures) and ``videos`` (columnar, the
    bulk), both JSON-ready; ``metrics`` is the mAP they were built from."""

    summary: dict
    videos: dict
    metrics: MapResult


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote."""

    path: Path
    videos: int  # V
    detections: int  # D: detections shown (in the subset's videos)
    ignored: int  # predictions of videos outside the subset (counted as false positives by the mAP, not shown)
    linked: int  # videos with a playable file (``video_dir``)
    size_bytes: int
    metrics: MapResult


# ------------------------------------------------------------------------------------------------- the data
@dataclass
class DetectionTypes:
    """Every prediction's error type at one tIoU and the ground truth it refers to; every ground truth's match."""

    types: np.ndarray  # (N,) index into DETECTION_TYPES
    ref_gt: np.ndarray  # (N,) ground truth (file order) it matched, else the one it overlaps most, -1: none
    ref_tiou: np.ndarray  # (N,) tIoU with ref_gt (0 where none)
    gt_score: np.ndarray  # (G,) score of the prediction matched to each ground truth, -1: missed


def detection_types(
    gt: GroundTruth, pred: Predictions, matching: Matching, row: int, min_tiou: float = MIN_TIOU
) -> DetectionTypes:
    """Types and references of the predictions ``pred`` (all of them, file order) at threshold ``row`` of
    ``matching`` (made from ``pred`` by :func:`~cltdr.evaluation.matching.match`), as
    :func:`~cltdr.evaluation.diagnosis.error_types` decides them; a prediction whose label is not a
    ground-truth class is :data:`OTHER_CLASS`.

    A ground truth counts as found above a score threshold iff the score of its match reaches it: the greedy
    matching of a prediction never depends on lower-scored ones.
    """
    known = np.flatnonzero(pred.labels >= 0)  # (N',) the predictions the matching holds, in file order
    types = np.full(len(pred), DETECTION_TYPES.index(OTHER_CLASS), dtype=np.int64)  # (N,)
    types[known] = error_types(gt, matching, min_tiou)[row]
    ref_tiou, ref_gt = best_overlap(gt, pred, _OVERLAP_EPS)  # (N,), (N,)
    matched = np.full(len(pred), -1, dtype=np.int64)  # (N,)
    matched[known] = matching.matched[row]
    tp = matched >= 0
    ref_gt[tp] = matched[tp]
    ref_tiou[tp] = segment_iou(pred.segments[tp], gt.segments[matched[tp]])
    gt_score = np.full(len(gt.labels), -1.0)  # (G,)
    gt_score[matched[tp]] = pred.scores[tp]
    return DetectionTypes(types, ref_gt, ref_tiou, gt_score)


def report_data(
    ground_truth: Mapping,
    predictions: Mapping,
    subset: str,
    tiou_thresholds: Sequence[float],
    *,
    shown_thresholds: Sequence[float] | None = None,
    diagnosis_thresholds: Sequence[float] = (0.5,),
    bins: str = "thumos14",
    min_tiou: float = MIN_TIOU,
    video_dir: str | os.PathLike | None = None,
    page_dir: str | os.PathLike = ".",
    sources: Mapping[str, str] | None = None,
    title: str = "cltdr report",
) -> ReportData:
    """Everything the page shows, from an annotation object and an ActivityNet result object.

    tiou_thresholds: (M,) of the mAP; shown_thresholds: the columns of the tables (all by default; the average
    always covers all M). Each detection is typed at the lowest of ``diagnosis_thresholds`` (DETAD's 0.5 by
    default), which also drive the diagnosis figures. video_dir: a folder of video files, linked relative to
    ``page_dir`` (the report's folder; see :func:`link_videos`). sources: ``ground_truth``, ``predictions``
    (and any other key) -> where they came from, shown on the page and named in error messages.
    """
    sources = dict(sources or {})
    where = f"{sources['ground_truth']}: " if "ground_truth" in sources else ""  # errors name the file
    thresholds = check_thresholds(tiou_thresholds)  # (M,)
    try:
        gt = GroundTruth.from_annotations(ground_truth, subset)
    except DataError as err:
        raise DataError(f"{where}{err}") from None
    links = link_videos(video_dir, gt.videos, page_dir) if video_dir is not None else None
    videos, labels, scores, segments = flatten_predictions(predictions, sources.get("predictions", "predictions"))
    pred = Predictions.from_flat(videos, labels, scores, segments, gt)
    # One matching for the mAP (exactly what evaluate_map computes) and the per-class numbers.
    matching = match(gt, pred, thresholds)
    metrics = map_from_matching(matching, gt.class_names, RECALL_BUDGETS)
    error_tiou = float(min(check_thresholds(diagnosis_thresholds)))
    near = np.flatnonzero(np.isclose(thresholds, error_tiou))
    typed = (
        detection_types(gt, pred, matching, int(near[0]), min_tiou)
        if len(near)
        else detection_types(gt, pred, match(gt, pred, [error_tiou]), 0, min_tiou)
    )
    # Classes: the ground truth's (sorted), then the other labels of the subset's predictions (sorted).
    other = sorted({labels[i] for i in np.flatnonzero((pred.labels < 0) & (pred.video >= 0))})
    class_names = list(gt.class_names) + other
    index = {name: k for k, name in enumerate(class_names)}
    det_class = np.array([index.get(label, -1) for label in labels], dtype=np.int64).reshape(-1)  # (N,)

    summary = {
        "title": title,
        "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cltdr_version": __version__,
        "sources": sources,
        "subset": subset,
        "thresholds": thresholds.tolist(),
        "shown": [shown_thresholds is None or any(math.isclose(t, s) for s in shown_thresholds) for t in thresholds],
        "mAP": metrics.mAP.tolist(),
        "average_mAP": metrics.average_mAP,
        "recall_at_kG": {f"{k}G": r.tolist() for k, r in zip(metrics.recall_budgets, metrics.recall)},
        "classes": class_names,
        "num_gt_classes": gt.num_classes,
        "per_class": _per_class(gt, pred, matching, metrics),
        "types": list(DETECTION_TYPES),
        "type_colors": list(DETECTION_COLORS),
        "error_tiou": error_tiou,
        "min_tiou": min_tiou,
        "counts": {
            "videos": len(gt.videos),
            "ground_truth": len(gt.labels),
            "detections": int((pred.video >= 0).sum()),
            "ignored": int((pred.video < 0).sum()),
            "other_class": int(((pred.labels < 0) & (pred.video >= 0)).sum()),
            "linked": len(links or {}),
        },
        "scales": {"time": TIME_SCALE, "score": SCORE_SCALE, "tiou": TIOU_SCALE},
        "diagnosis": None,
        "diagnosis_error": None,
        "figures": {},
    }
    try:
        d = diagnose(ground_truth, predictions, subset, diagnosis_thresholds, bins, min_tiou)
    except DataError as err:  # e.g. videos without a duration: the rest of the page is still worth having
        summary["diagnosis_error"] = f"{where}{err}"
    else:
        summary["diagnosis"] = d.to_json()
        summary["figures"] = _figures(d)
    return ReportData(summary, _video_columns(gt, pred, det_class, typed, links), metrics)


def _per_class(gt: GroundTruth, pred: Predictions, matching: Matching, metrics: MapResult) -> dict:
    """AP and recall (M, K), instances and detections (K,) of the ground-truth classes. Recall: the share of a
    class's ground truth that any of its predictions matches."""
    recall = np.stack(
        [np.bincount(gt.labels[m[m >= 0]], minlength=gt.num_classes) / gt.num_per_class for m in matching.matched]
    )  # (M, K)
    in_subset = (pred.video >= 0) & (pred.labels >= 0)
    return {
        "ap": metrics.ap.tolist(),
        "recall": recall.tolist(),
        "num_gt": gt.num_per_class.tolist(),
        "num_det": np.bincount(pred.labels[in_subset], minlength=gt.num_classes).tolist(),
    }


def _video_columns(
    gt: GroundTruth, pred: Predictions, det_class: np.ndarray, typed: DetectionTypes, links: Mapping[str, str] | None
) -> dict:
    """The per-video data as columns: videos (V,) in file order with offsets into the ground truth (G,) and
    the detections (D,), each video's detections best first (ties: file order). Integers only (times in
    centiseconds, scores in thousandths, tIoU in hundredths): the bulk of the page, read by its script."""
    in_subset = pred.video >= 0
    order = np.flatnonzero(in_subset)[np.lexsort((-pred.scores[in_subset], pred.video[in_subset]))]  # (D,)
    V = len(gt.videos)
    det_offsets = np.r_[0, np.cumsum(np.bincount(pred.video[order], minlength=V))]  # (V + 1,)
    gt_offsets = np.r_[0, np.cumsum(np.bincount(gt.video, minlength=V))]  # (V + 1,)
    ref = typed.ref_gt[order]  # (D,)
    # A detection's ground truth is in its own video, whose ground truth is contiguous (gt.video is sorted).
    local_ref = np.where(ref >= 0, ref - gt_offsets[pred.video[order]], -1)  # (D,)
    seg = pred.segments[order]  # (D, 2)
    return {
        "id": list(gt.videos),
        "duration": _scaled(_durations(gt, pred, order), TIME_SCALE).tolist(),  # (V,)
        "src": None if links is None else [links.get(v, "") for v in gt.videos],  # "": no file
        "gt_off": gt_offsets.tolist(),
        "det_off": det_offsets.tolist(),
        "gt": {
            "s": _scaled(gt.segments[:, 0], TIME_SCALE).tolist(),  # (G,) start
            "d": _scaled(gt.segments[:, 1] - gt.segments[:, 0], TIME_SCALE).tolist(),  # (G,) length
            "c": gt.labels.tolist(),
            "hit": np.where(typed.gt_score >= 0, _scaled(typed.gt_score, SCORE_SCALE), -1).tolist(),
        },
        "det": {
            "s": _scaled(seg[:, 0], TIME_SCALE).tolist(),
            "d": _scaled(seg[:, 1] - seg[:, 0], TIME_SCALE).tolist(),
            "c": det_class[order].tolist(),
            "score": _scaled(pred.scores[order], SCORE_SCALE).tolist(),
            "type": typed.types[order].tolist(),
            # Floored, so that a tIoU shown as 0.50 reaches a threshold of 0.5.
            "iou": np.floor(typed.ref_tiou[order] * TIOU_SCALE).astype(np.int64).tolist(),
            "ref": local_ref.tolist(),  # index among its video's ground truth
        },
    }


def _scaled(values: np.ndarray, scale: int) -> np.ndarray:
    """Values as the page's integers (rounded)."""
    return np.rint(np.asarray(values, dtype=float) * scale).astype(np.int64)


def _durations(gt: GroundTruth, pred: Predictions, order: np.ndarray) -> np.ndarray:
    """(V,) each video's duration: the annotation's, else the end of its last segment (at least 1 s)."""
    ends = np.ones(len(gt.videos))
    np.maximum.at(ends, gt.video, gt.segments[:, 1])
    np.maximum.at(ends, pred.video[order], pred.segments[order, 1])
    given = np.isfinite(gt.durations) & (gt.durations > 0)
    return np.where(given, gt.durations, ends)


def _figures(d) -> dict[str, str]:
    """The DETAD figures of ``cltdr diagnose`` (the same functions) as PNG data URIs."""
    from cltdr.viz.diagnosis import plot_false_negatives, plot_false_positives, plot_sensitivity

    out = {}
    with tempfile.TemporaryDirectory(prefix="cltdr-report-") as tmp:
        for name, plot in (
            ("false_positives", plot_false_positives),
            ("sensitivity", plot_sensitivity),
            ("false_negatives", plot_false_negatives),
        ):
            png = plot(d, Path(tmp) / f"{name}.png").read_bytes()
            out[name] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return out


# ----------------------------------------------------------------------------------------------- the videos
def link_videos(video_dir: str | os.PathLike, video_ids: Sequence[str], page_dir: str | os.PathLike) -> dict[str, str]:
    """video id -> URL of its file in ``video_dir`` relative to ``page_dir`` (the report's folder), for the
    videos that have one: ``<id><ext>``, also tried with ActivityNet's ``v_`` prefix added or removed, with
    ``ext`` one of :data:`VIDEO_EXTENSIONS` (first in that order). Only the folder itself is searched."""
    folder = Path(video_dir)
    if not folder.is_dir():
        raise CltdrError(f"--videos {folder}: not a folder (expected one holding <video id>.mp4, .webm, ...)")
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    files: dict[str, Path] = {}  # stem -> best file
    for entry in os.scandir(folder):
        path = Path(entry.path)
        ext = path.suffix.lower()
        if ext not in rank or not entry.is_file():
            continue
        if path.stem not in files or rank[ext] < rank[files[path.stem].suffix.lower()]:
            files[path.stem] = path
    page_dir = Path(page_dir).resolve()
    links = {}
    for video in video_ids:
        candidates = (video, f"v_{video}", video[2:] if video.startswith("v_") else None)
        found = next((files[c] for c in candidates if c in files), None)
        if found is not None:
            links[video] = quote(Path(os.path.relpath(found.resolve(), page_dir)).as_posix())
    return links


# ------------------------------------------------------------------------------------------------- the page
def render_html(data: ReportData) -> str:
    """The page: the template with the title and both JSON objects filled in."""
    template = resources.files("cltdr.viz").joinpath(TEMPLATE).read_text(encoding="utf-8")
    values = {
        "__REPORT_TITLE__": html.escape(data.summary["title"]),
        "__REPORT_SUMMARY__": _script_json(data.summary),
        "__REPORT_VIDEOS__": _script_json(data.videos),
    }
    # One pass over the template: text inside the values is never taken for a placeholder.
    return re.sub("|".join(values), lambda m: values[m.group(0)], template)


def _script_json(obj) -> str:
    """Compact JSON that cannot end its ``<script>`` element: ``<`` only occurs inside strings, as ``\\u003c``."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def write_report(
    path: str | os.PathLike,
    ground_truth: Mapping | str | os.PathLike,
    predictions: Mapping | str | os.PathLike,
    subset: str,
    tiou_thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
    *,
    video_dir: str | os.PathLike | None = None,
    sources: Mapping[str, str] | None = None,
    **options,
) -> ReportSummary:
    """Build the report of ``predictions`` against ``ground_truth`` (objects, or JSON files to read) and write
    it to ``path`` atomically. ``options`` go to :func:`report_data` (shown_thresholds, diagnosis_thresholds,
    bins, min_tiou, title)."""
    path = Path(path)
    if path.is_dir():
        raise CltdrError(f"--out {path} is a folder; give the report's file name, e.g. {path / 'report.html'}")
    sources = dict(sources or {})
    if not isinstance(ground_truth, Mapping):
        sources.setdefault("ground_truth", str(ground_truth))
    if not isinstance(predictions, Mapping):
        sources.setdefault("predictions", str(predictions))
    if video_dir is not None:
        sources.setdefault("videos", str(video_dir))
    data = report_data(
        ground_truth if isinstance(ground_truth, Mapping) else read_json(ground_truth, "ground-truth"),
        predictions if isinstance(predictions, Mapping) else read_json(predictions, "prediction"),
        subset,
        tiou_thresholds,
        video_dir=video_dir,
        page_dir=path.parent,
        sources=sources,
        **options,
    )
    page = render_html(data).encode("utf-8")  # the page says <meta charset="utf-8">, whatever the locale
    try:
        atomic_write(path, lambda f: f.write(page), mode="wb")
    except OSError as err:
        raise CltdrError(f"cannot write the report {path}: {err}") from None
    counts = data.summary["counts"]
    return ReportSummary(
        path, counts["videos"], counts["detections"], counts["ignored"], counts["linked"], len(page), data.metrics
    )
