"""Dataset validation: `cltdr check CONFIG`, and the same per-video checks run before training starts.

Each video's features are read once (``.npy`` memory-mapped, the values scanned once for NaN/inf) and compared
with its annotations. A problem is an *error* when the dataset cannot be trained or tested on as configured (an
annotation file that does not load, a missing or unreadable feature file, a wrong shape or channel count, NaN/inf,
a video too short for the pyramid, an empty split) and a *warning* when it can but something is probably wrong
(features whose length does not match duration x fps / stride, actions that start after the features end, videos
without actions, duplicate annotations, segments outside their video that ``segment_policy`` clipped or dropped,
classes without training actions).

Lengths are in steps of the model's input (after ``downsample_rate`` / ``resize_to``). Dimension letters:
V videos, N actions of one video.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from cltdr.config import Config
from cltdr.data.annotations import VideoRecord
from cltdr.data.build import feature_store, load_split, pyramid_name
from cltdr.data.dataset import TALDataset
from cltdr.data.features import FeatureError, FeatureStore, check_length
from cltdr.errors import DataError
from cltdr.training.recipe import INITIAL_WEIGHT_SHARE, schedule, suggest_schedule, suggest_width
from cltdr.utils.text import counted

CHECK_WINDOW = 16384  # steps read at a time by the checks (64 MB of 1024-channel float32)
LENGTH_TOLERANCE = 0.05  # features may cover the video's duration to within 5% (or 2 feature strides)
DUPLICATE_TOL_S = 1e-3  # same label and both boundaries this close: a duplicate (as in the evaluation)
TOP_LEVEL_SHARE = 0.05  # suggested pyramid: at most this share of actions lands in the open-ended top level
ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    """One finding. severity: "error" or "warning"; kind: a short category (e.g. "missing file")."""

    severity: str
    kind: str
    message: str
    video_id: str | None = None


class VideoCheck(NamedTuple):
    """What one read of a video's features tells: its input length (None when unusable), the lengths of its
    actions in input steps (N,), and its problems."""

    steps: int | None
    action_steps: np.ndarray
    problems: list[Problem]


def check_video(store: FeatureStore, rec: VideoRecord, min_length: int, reason: str) -> VideoCheck:
    """Read one video's features once, window by window (memory stays bounded for hours-long videos), and check
    them against its annotation."""
    try:
        opened = store.open(rec.video_id, rec.subset)  # channels checked
        for start in range(0, opened.num_steps, CHECK_WINDOW):
            opened.read(start, min(start + CHECK_WINDOW, opened.num_steps))  # values checked
    except FeatureError as e:
        return VideoCheck(None, np.zeros(0), [Problem("error", e.kind, str(e), rec.video_id)])
    where = opened.where
    T = opened.num_steps
    steps = store.prepared_length(T)
    problems = []
    try:
        check_length(steps, min_length, reason, where)
    except FeatureError as e:
        problems.append(Problem("error", e.kind, str(e), rec.video_id))
    stored = store.stored_grid(rec.fps)
    covered = stored.span_seconds(T)
    if abs(covered - rec.duration) > max(LENGTH_TOLERANCE * rec.duration, 2 * store.feat_stride / rec.fps):
        expected = stored.expected_steps(rec.duration)
        problems.append(
            Problem(
                "warning",
                "length vs duration",
                f"{where} has {counted(T, 'step')} covering {covered:.1f} s at {rec.fps:g} fps, but the video lasts "
                f"{rec.duration:.1f} s (expected about {expected} steps = (duration x fps - num_frames) / feat_stride "
                f"+ 1); check fps, feat_stride and num_frames",
                rec.video_id,
            )
        )
    segments = store.grid(rec.fps, T).to_grid(np.asarray(rec.segments))  # (N, 2) input steps
    beyond = int((segments[:, 0] >= steps - 0.5).sum())
    if beyond:
        problems.append(
            Problem(
                "warning",
                "actions after the features",
                f"{where}: {counted(beyond, 'action starts', 'actions start')} after its {counted(steps, 'step')} end",
                rec.video_id,
            )
        )
    return VideoCheck(steps, segments[:, 1] - segments[:, 0], problems)


def annotation_problems(rec: VideoRecord, class_names: list[str] | None = None) -> tuple[list[Problem], int]:
    """Problems of one video's annotation alone, and its number of multi-label segments (a segment annotated
    again with another label: normal in MultiTHUMOS, kept). Labels are named by ``class_names`` when given."""
    problems = []
    if len(rec.labels) == 0:
        problems.append(
            Problem("warning", "video without actions", f"video {rec.video_id!r} has no actions", rec.video_id)
        )
    seg, lab = np.asarray(rec.segments), np.asarray(rec.labels)
    close = (np.abs(seg[:, None, :] - seg[None, :, :]) <= DUPLICATE_TOL_S).all(axis=2)  # (N, N)
    earlier = np.tril(close, k=-1)  # pairs (i, j) with j < i
    same_label = lab[:, None] == lab[None, :]
    duplicates = np.flatnonzero((earlier & same_label).any(axis=1))
    if duplicates.size:
        i = int(duplicates[0])
        problems.append(
            Problem(
                "warning",
                "duplicate annotations",
                f"video {rec.video_id!r}: {counted(duplicates.size, 'duplicate annotation')}, e.g. "
                f"{class_names[lab[i]] if class_names else f'label {lab[i]}'!r} "
                f"{seg[i].tolist()} (ignored by the evaluation)",
                rec.video_id,
            )
        )
    multi_label = int((earlier & ~same_label).any(axis=1).sum())
    return problems, multi_label


def _load_problems(caught: list[warnings.WarningMessage]) -> list[Problem]:
    """The segment-policy warnings of :func:`load_annotations`, as problems."""
    return [
        Problem("warning", "segments outside their video", str(w.message))
        for w in caught
        if "outside" in str(w.message)
    ]


def _stats(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {}
    keys = ("min", "p10", "median", "p90", "max")
    return {k: round(float(v), 1) for k, v in zip(keys, np.percentile(values, [0, 10, 50, 90, 100]))}


@dataclass
class SplitReport:
    """What `cltdr check` found in one subset."""

    role: str
    subset: str
    class_names: list[str] = field(default_factory=list)
    num_videos: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    video_steps: list[int] = field(default_factory=list)  # (V',) input steps of every usable video
    action_steps: list[float] = field(default_factory=list)  # input steps of every action of a usable video
    actions_per_video: list[int] = field(default_factory=list)
    multi_label_segments: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def num_actions(self) -> int:
        return sum(self.class_counts.values())

    def counts(self, severity: str) -> Counter:
        return Counter(p.kind for p in self.problems if p.severity == severity)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "subset": self.subset,
            "videos": self.num_videos,
            "actions": self.num_actions,
            "classes": len([c for c in self.class_counts.values() if c]),
            "class_counts": self.class_counts,
            "video_steps": _stats(self.video_steps),
            "action_steps": _stats(self.action_steps),
            "actions_per_video": _stats(self.actions_per_video),
            "multi_label_segments": self.multi_label_segments,
            "errors": dict(self.counts("error")),
            "warnings": dict(self.counts("warning")),
            "problems": [vars(p) for p in self.problems],
        }


def check_split(cfg: Config, role: str, subset: str) -> SplitReport:
    """Load one subset as training would and check every video."""
    report = SplitReport(role, subset)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            split = load_split(cfg, subset)
    except DataError as e:
        report.problems.append(Problem("error", "annotations", str(e)))
        return report
    report.problems += _load_problems(caught)
    report.class_names = list(split.class_names)
    report.num_videos = len(split.videos)
    store, reason = feature_store(cfg), pyramid_name(cfg)
    counts = np.zeros(len(split.class_names), dtype=np.int64)
    for rec in split.videos:
        problems, multi = annotation_problems(rec, split.class_names)
        result = check_video(store, rec, cfg.divisor, reason)
        report.problems += result.problems + problems
        report.multi_label_segments += multi
        counts += np.bincount(rec.labels, minlength=len(counts))
        report.actions_per_video.append(len(rec.labels))
        if result.steps is not None:
            report.video_steps.append(result.steps)
            report.action_steps += result.action_steps.round(2).tolist()
    report.class_counts = {name: int(n) for name, n in zip(split.class_names, counts)}
    return report


@dataclass
class CheckReport:
    """The reports of the configured subsets and the settings suggested by the training subset."""

    splits: list[SplitReport]
    suggestions: dict[str, Any]

    @property
    def errors(self) -> list[Problem]:
        return [p for s in self.splits for p in s.problems if p.severity == "error"]

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.errors, "splits": [s.to_json() for s in self.splits], "suggestions": self.suggestions}


def _training_checks(cfg: Config, splits: list[SplitReport]) -> None:
    """Training problems: a subset without actions, an EMA that keeps the initial weights, classes never trained."""
    train = next(s for s in splits if s.role == "train")
    if train.class_counts and train.num_actions == 0:
        train.problems.append(Problem("error", "no actions", f"subset {train.subset!r} has no actions to train on"))
    recipe = _recipe(cfg, train)
    share = recipe["ema_initial_share"]
    if share is not None and share > INITIAL_WEIGHT_SHARE:
        train.problems.append(
            Problem(
                "warning",
                "EMA keeps the initial weights",
                f"the evaluated EMA still holds {share:.0%} of the initial weights after the {recipe['total_steps']} "
                "optimiser steps of this schedule: set train.ema_warmup: true, lower train.ema_decay or train longer",
            )
        )
    untrained = [c for c, n in train.class_counts.items() if n == 0]
    if untrained and not cfg.dataset.class_agnostic:
        train.problems.append(
            Problem(
                "warning",
                "classes without training actions",
                f"{counted(len(untrained), 'class has', 'classes have')} no action in subset {train.subset!r} "
                f"(the model never learns them), e.g. {untrained[:5]}",
            )
        )


def suggest(cfg: Config, train: SplitReport) -> dict[str, Any]:
    """``max_seq_len`` and pyramid settings that fit the training subset's lengths (in input steps)."""
    if not train.video_steps:
        return {}
    d, divisor = cfg.dataset, cfg.divisor
    videos = np.asarray(train.video_steps)
    if d.resize_to is not None:
        max_seq_len, why = d.resize_to, "every video is resized to dataset.resize_to"
    else:
        max_seq_len = int(math.ceil(np.percentile(videos, 90) / divisor) * divisor)
        why = "crops of this length keep 90% of the training videos whole"
    out: dict[str, Any] = {
        "max_seq_len": {
            "suggested": max_seq_len,
            "current": d.max_seq_len,
            "why": why,
            "videos_cropped_now": round(float((videos > d.max_seq_len).mean()), 3),
        },
        "recipe": _recipe(cfg, train),
    }
    if not train.action_steps:
        return out
    reach = np.asarray(train.action_steps) / 2  # largest regression distance, at an action's centre
    ranges = cfg.model.level_ranges()
    shares = [round(float(((reach >= lo) & (reach < hi)).mean()), 3) for lo, hi in ranges]
    levels = next((L for L in range(2, 11) if (reach >= 2.0**L).mean() <= TOP_LEVEL_SHARE), 10)
    fits = max(int(math.log2(max(videos.min(), 1))) + 1, 1)  # the shortest video must fill the coarsest level
    levels = min(levels, fits)
    suggested_ranges = [[0, 4]] + [[2 ** (l + 1), 2 ** (l + 2)] for l in range(1, levels)]
    suggested_ranges[-1][1] = "inf"
    out["num_levels"] = {
        "suggested": levels,
        "current": cfg.model.num_levels,
        "regression_range": suggested_ranges,
        "why": f"at most {TOP_LEVEL_SHARE:.0%} of the training actions are longer than the last closed range "
        "(an action's largest regression distance is about half its length), and the shortest training "
        f"video ({int(videos.min())} steps) fills the coarsest level",
        "actions_per_level_now": dict(zip([f"[{lo:g}, {hi:g})" for lo, hi in ranges], shares)),
    }
    return out


def _recipe(cfg: Config, train: SplitReport) -> dict[str, Any]:
    """The schedule in optimiser steps and what the EMA averages at its end (``cltdr.training.recipe``)."""
    t = cfg.train
    sched = schedule(len(train.video_steps), t.batch_size, t.warmup_epochs, t.epochs, t.ema_decay, t.ema_warmup)
    suggestions = [
        s
        for s in (
            suggest_schedule(sched.iters_per_epoch, t.warmup_epochs, t.epochs),
            suggest_width(cfg.model.embed_dim, t.lr),
        )
        if s is not None
    ]
    return {
        "iters_per_epoch": sched.iters_per_epoch,
        "warmup_steps": sched.warmup_steps,
        "total_steps": sched.total_steps,
        "ema_horizon_steps": sched.ema_horizon,
        "ema_initial_share": sched.initial_share,
        "suggestions": [{"set": s.keys, "why": s.why} for s in suggestions],
    }


def check_dataset(cfg: Config) -> CheckReport:
    """Check the training, validation (when set) and test subsets of a config."""
    d = cfg.dataset
    seen: dict[str, SplitReport] = {}
    splits = []
    for role, subset in zip(ROLES, (d.train_subset, d.val_subset, d.test_subset)):
        if subset is None:
            continue
        key = subset.lower()
        if key in seen:  # the same subset in two roles: one read
            splits.append(SplitReport(**{**vars(seen[key]), "role": role}))
            continue
        seen[key] = check_split(cfg, role, subset)
        splits.append(seen[key])
    _training_checks(cfg, splits)
    return CheckReport(splits, suggest(cfg, splits[0]))


def _fmt_stats(stats: dict[str, float]) -> str:
    return " | ".join(f"{k} {v:g}" for k, v in stats.items()) if stats else "-"


def format_report(report: CheckReport, cfg: Config, max_problems: int = 10) -> str:
    """A readable summary: per subset the counts, lengths and problems (at most ``max_problems`` listed per
    subset), then the suggestions and the verdict."""
    d = cfg.dataset
    sources = " + ".join(str(s) for s in d.feat_sources)
    prep = []
    if d.downsample_rate > 1:
        prep.append(f"every {d.downsample_rate}th step")
    if d.resize_to:
        prep.append(f"resized to {d.resize_to} steps")
    lines = [
        f"features: {sources} ({d.feat_ext}, {d.input_dim} channels, stride {d.feat_stride:g}, "
        f"{d.num_frames:g} frames per feature{', ' + ', '.join(prep) if prep else ''})"
    ]
    for s in report.splits:
        lines.append(
            f"\n[{s.role}] subset {s.subset!r}: {s.num_videos} videos, {s.num_actions} actions, "
            f"{sum(1 for n in s.class_counts.values() if n)} classes"
        )
        if s.class_counts:
            shown = ", ".join(f"{c} {n}" for c, n in sorted(s.class_counts.items(), key=lambda x: (-x[1], x[0])))
            lines.append(f"  actions per class: {shown}")
            lines.append(f"  video length (steps): {_fmt_stats(_stats(s.video_steps))}")
            lines.append(f"  action length (steps): {_fmt_stats(_stats(s.action_steps))}")
            lines.append(f"  actions per video: {_fmt_stats(_stats(s.actions_per_video))}")
            if s.multi_label_segments:
                lines.append(f"  segments annotated with several labels: {s.multi_label_segments} (kept)")
        for severity in ("error", "warning"):
            counts = s.counts(severity)
            if counts:
                lines.append(f"  {severity}s: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
        listed = sorted(s.problems, key=lambda p: p.severity != "error")
        for p in listed[:max_problems]:
            lines.append(f"    {p.severity}: {p.message}")
        if len(listed) > max_problems:
            lines.append(f"    ... and {len(listed) - max_problems} more (--json writes them all)")
        if not s.problems:
            lines.append("  no problems")
    if report.suggestions:
        lines.append("\nsuggested settings (from the training subset):")
        m = report.suggestions["max_seq_len"]
        lines.append(
            f"  dataset.max_seq_len: {m['suggested']} (now {m['current']}; {m['why']}; "
            f"{m['videos_cropped_now']:.0%} of the training videos are cropped now)"
        )
        if "num_levels" in report.suggestions:
            n = report.suggestions["num_levels"]
            ranges = " ".join(f"[{lo},{hi}]" for lo, hi in n["regression_range"])
            lines.append(
                f"  model.num_levels: {n['suggested']} (now {n['current']}): regression ranges {ranges} "
                f"steps; {n['why']}"
            )
            now = " | ".join(f"{k} {v:.0%}" for k, v in n["actions_per_level_now"].items())
            lines.append(f"  training actions per level now: {now}")
        r = report.suggestions["recipe"]
        ema = (
            "no EMA"
            if r["ema_horizon_steps"] is None
            else f"the EMA averages about the last {r['ema_horizon_steps']:.0f} steps at the end, the initial "
            f"weights keep {r['ema_initial_share']:.1%} of it"
        )
        lines.append(
            f"  schedule: {r['iters_per_epoch']} iterations per epoch, {r['warmup_steps']} warm-up + "
            f"{r['total_steps'] - r['warmup_steps']} steps = {r['total_steps']} optimiser steps; {ema}"
        )
        for s in r["suggestions"]:
            keys = " ".join(f"{k}={v}" for k, v in s["set"].items())
            lines.append(f"  {keys}: {s['why']}")
    errors = report.errors
    if errors:
        lines.append(f"\nresult: {counted(len(errors), 'error')}: the dataset cannot be used as configured")
    else:
        warned = sum(len(s.problems) for s in report.splits)
        lines.append(f"\nresult: OK, the dataset can be trained on ({counted(warned, 'warning')})")
    return "\n".join(lines)


def preflight(dataset: TALDataset, max_listed: int = 5) -> None:
    """The per-video checks of `cltdr check` on a dataset about to be trained on (or validated with).

    Reads every feature file once (files, shapes, channels, values, lengths against durations, segments against
    features), so that a bad dataset stops a run before its first epoch rather than in the middle of one.
    Raises DataError listing the videos that cannot be used; problems training survives (e.g. features shorter
    than the video) are one warning."""
    errors, warned = [], []
    for rec in dataset.videos:
        result = check_video(dataset.store, rec, dataset.min_length, dataset.min_length_reason or "the model")
        problems = result.problems + annotation_problems(rec)[0]
        errors += [p for p in problems if p.severity == "error"]
        warned += [p for p in problems if p.severity == "warning"]
    subset = dataset.videos[0].subset if dataset.videos else "?"
    if errors:
        bad = len({p.video_id for p in errors})
        listed = "\n  ".join(p.message for p in errors[:max_listed])
        more = f"\n  ... and {len(errors) - max_listed} more" if len(errors) > max_listed else ""
        raise DataError(
            f"{bad} of {counted(len(dataset.videos), 'video')} of subset {subset!r} cannot be used:\n  {listed}"
            f"{more}\n(`cltdr check CONFIG` reports every problem of the dataset)"
        )
    if warned:
        kinds = Counter(p.kind for p in warned)
        warnings.warn(
            f"subset {subset!r}: "
            + ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items()))
            + f"; e.g. {warned[0].message} (`cltdr check CONFIG` lists them all)",
            stacklevel=3,
        )
