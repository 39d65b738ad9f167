"""Converters from the official annotation formats to the project's annotation JSON (SPEC section 2).

Formats (:data:`CONVERTERS`):

* ``activitynet``: the ActivityNet-1.3 JSON, ``{"database": {id: {"subset": "training", "duration": s,
  "url": ..., "resolution": ..., "annotations": [{"label", "segment"}]}}}`` (no fps; test videos without
  annotations). ``hacs``: the HACS segments JSON, the same layout (subsets training / validation / testing).
* ``epic-kitchens``: EPIC-Kitchens-100 CSVs (``EPIC_100_train.csv``, ``EPIC_100_validation.csv``: columns
  narration_id, participant_id, video_id, start_timestamp / stop_timestamp ``HH:MM:SS.ff``, verb, verb_class,
  noun, noun_class, ...), for the ``verb``, ``noun`` or ``action`` task; an action's label is ``"verb,noun"``
  (e.g. ``"open,door"``), the labels `cltdr evaluate --dataset epic` reads.
* ``multithumos``: a folder of per-class text files ``<class>.txt`` with lines ``video_id start end`` (seconds),
  and optionally ``class_list.txt`` (lines ``index name``) fixing the class order.

Durations and frame rates: a video-info file (a CSV with columns ``video_id, duration[, fps][, subset]`` such as
``EPIC_100_video_info.csv``, or an annotation JSON such as THUMOS14's) gives them; ``fps`` overrides the frame
rate (use the rate the *features* were extracted at: 30 for the EPIC SlowFast features); a video the info does not
list lasts until its last action ends plus ``margin_s`` (1 s by default), and the summary says how many did.

Every converter fills one :class:`_Builder` (the common core): it drops segments with end <= start and exact
duplicates (counted in the summary), numbers the classes (in the order given, else alphabetically) and returns a
:class:`Conversion`. Errors name the file, the line or video, and what was expected.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cltdr.errors import DataError
from cltdr.evaluation.epic import action_label
from cltdr.utils.io import atomic_write_json, read_json
from cltdr.utils.text import counted

DEFAULT_MARGIN_S = 1.0  # a video without known duration lasts until its last action ends plus this
EPIC_TASKS = ("verb", "noun", "action")


@dataclass
class ConvertOptions:
    """Options shared by the converters (each uses the ones that apply to its format).

    fps: frame rate written for every video. video_info: CSV or JSON with durations (and fps, subset).
    classes: class-list files (ActivityNet / HACS: one name per line; MultiTHUMOS: ``index name`` lines;
    EPIC: the verb and/or noun class CSV, columns ``id, key``). task: EPIC task. margin_s: see the module.
    """

    fps: float | None = None
    video_info: Path | None = None
    classes: Sequence[Path] = ()
    task: str = "verb"
    margin_s: float = DEFAULT_MARGIN_S


@dataclass
class Conversion:
    """The converted ``database`` and what the conversion did, for the summary."""

    format: str
    database: dict[str, dict[str, Any]]
    class_names: list[str]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": f"cltdr-convert-{self.format}", "database": self.database}

    def write(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json(), indent=None)

    def summary(self) -> str:
        videos = Counter(v["subset"] for v in self.database.values())
        actions: Counter[str] = Counter()
        for v in self.database.values():
            actions[v["subset"]] += len(v["annotations"])
        rows = [f"  {s}: {counted(videos[s], 'video')}, {counted(actions[s], 'action')}" for s in sorted(videos)]
        return "\n".join(
            [
                f"{self.format}: {len(self.database)} videos, {len(self.class_names)} classes",
                *rows,
                *[f"  note: {n}" for n in self.notes],
            ]
        )


class _Builder:
    """The common core: collects videos and actions, then numbers the classes."""

    def __init__(self, fmt: str, source: Path, info: dict[str, dict[str, Any]], opts: ConvertOptions):
        self.fmt, self.source, self.info, self.opts = fmt, source, info, opts
        self.videos: dict[str, dict[str, Any]] = {}
        self.actions: dict[str, list[tuple[str, float, float]]] = {}
        self.dropped: Counter = Counter()
        self.guessed_durations = 0

    def video(self, video_id: str, subset: str, duration: float | None = None, fps: float | None = None) -> None:
        """Declare a video; duration / fps from the argument, else the video-info file (fps option first)."""
        known = self.info.get(video_id, {})
        entry = self.videos.setdefault(video_id, {"subset": subset})
        duration = duration if duration is not None else known.get("duration")
        if duration is not None:
            entry["duration"] = float(duration)
        fps = self.opts.fps or fps or known.get("fps")
        if fps:
            entry["fps"] = float(fps)
        self.actions.setdefault(video_id, [])

    def action(self, video_id: str, label: str, start: float, end: float) -> None:
        if end <= start:
            self.dropped["segments with end <= start"] += 1
            return
        if (label, start, end) in self.actions[video_id]:
            self.dropped["exact duplicates"] += 1
            return
        self.actions[video_id].append((label, start, end))

    def finish(self, class_names: Sequence[str] | None = None) -> Conversion:
        labels = {label for acts in self.actions.values() for label, _, _ in acts}
        names = list(class_names) if class_names else sorted(labels)
        unknown = sorted(labels - set(names))
        if unknown:
            raise DataError(f"{self.source}: labels {unknown[:5]} are not in the class list ({len(names)} classes)")
        index = {name: i for i, name in enumerate(names)}
        database = {}
        for video_id, entry in self.videos.items():
            acts = sorted(self.actions[video_id], key=lambda a: (a[1], a[2], index[a[0]]))
            if "duration" not in entry:
                entry["duration"] = round(max((e for _, _, e in acts), default=0.0) + self.opts.margin_s, 3)
                self.guessed_durations += 1
            entry["annotations"] = [{"label": lab, "label_id": index[lab], "segment": [s, e]} for lab, s, e in acts]
            database[video_id] = entry
        notes = [f"dropped {n} {what}" for what, n in sorted(self.dropped.items())]
        if self.guessed_durations:
            notes.append(
                f"{self.guessed_durations} of {len(database)} videos had no known duration: set to their "
                f"last action's end + {self.opts.margin_s:g} s (give --video-info for the real durations)"
            )
        if not any("fps" in v for v in database.values()):
            notes.append("no fps written: set dataset.feat_fps (or default_fps) in the config")
        return Conversion(self.fmt, database, names, notes)


# ------------------------------------------------------------------------------------------ shared readers
def _number(value: Any, what: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} must be a number, got {value!r}") from None


def _csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header holding ``required`` columns."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise DataError(f"{path}: missing columns {missing}; the header has {columns}")
            return list(reader)
    except OSError as e:
        raise DataError(f"{path} could not be read: {e}") from None


def load_video_info(path: Path | None) -> dict[str, dict[str, Any]]:
    """video id -> {duration, fps, subset} (what the file gives) from a CSV (columns video_id, duration and
    optionally fps, subset) or an annotation JSON (ActivityNet layout: ``database`` entries)."""
    if path is None:
        return {}
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = read_json(path, "video info", expect=None)
        database = data.get("database", data) if isinstance(data, dict) else None
        if not isinstance(database, dict):
            raise DataError(f"{path}: expected an annotation JSON with a 'database' mapping")
        return {
            vid: {k: e[k] for k in ("duration", "fps", "subset") if isinstance(e, dict) and k in e}
            for vid, e in database.items()
        }
    info = {}
    for i, row in enumerate(_csv_rows(path, ["video_id", "duration"]), start=2):
        where = f"{path}, line {i}"
        entry: dict[str, Any] = {"duration": _number(row["duration"], "duration", where)}
        if row.get("fps"):
            entry["fps"] = _number(row["fps"], "fps", where)
        if row.get("subset"):
            entry["subset"] = row["subset"]
        info[row["video_id"]] = entry
    return info


def _name_list(path: Path) -> list[str]:
    """Class names, one per line; a leading index (``1 BaseballPitch``) is dropped."""
    try:
        lines = [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"class list {path} could not be read: {e}") from None
    return [" ".join(parts[1:]) if len(parts) > 1 and parts[0].isdigit() else " ".join(parts) for parts in lines]


# ------------------------------------------------------------------------------------------- converters
def convert_activitynet(inputs: Sequence[Path], opts: ConvertOptions, fmt: str = "activitynet") -> Conversion:
    """ActivityNet-1.3 / HACS segments JSON: one input file."""
    if len(inputs) != 1:
        raise DataError(f"{fmt}: expected one annotation JSON file, got {len(inputs)} inputs")
    path = Path(inputs[0])
    data = read_json(path, f"{fmt} annotation", expect=None)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict) or not database:
        raise DataError(f"{path}: expected an object with a non-empty 'database' mapping {{video_id: {{...}}}}")
    builder = _Builder(fmt, path, load_video_info(opts.video_info), opts)
    for video_id, entry in database.items():
        where = f"{path}, video {video_id!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("subset"), str):
            raise DataError(f"{where}: expected an object with a string 'subset'")
        duration = entry.get("duration")
        builder.video(
            video_id,
            entry["subset"],
            None if duration is None else _number(duration, "duration", where),
            entry.get("fps"),
        )
        for i, ann in enumerate(entry.get("annotations") or []):
            seg = ann.get("segment") if isinstance(ann, dict) else None
            if not (
                isinstance(ann, dict) and isinstance(ann.get("label"), str) and isinstance(seg, list) and len(seg) == 2
            ):
                raise DataError(
                    f"{where}, annotation {i}: expected {{'label': str, 'segment': [start, end]}}, got {ann!r}"
                )
            builder.action(video_id, ann["label"], _number(seg[0], "start", where), _number(seg[1], "end", where))
    return builder.finish(_name_list(opts.classes[0]) if opts.classes else None)


def _timestamp(text: str, where: str) -> float:
    """``HH:MM:SS.ff`` (any number of fraction digits) -> seconds."""
    match = re.fullmatch(r"(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)", text.strip())
    if not match:
        raise DataError(f"{where}: timestamp {text!r} is not HH:MM:SS.ff")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _subset_of(name: str) -> str:
    """Subset from an EPIC CSV name (``EPIC_100_train.csv`` -> training) or an explicit ``subset=path``."""
    lower = name.lower()
    for key, subset in (("train", "training"), ("val", "validation"), ("test", "testing")):
        if key in lower:
            return subset
    raise DataError(f"cannot tell the subset of {name!r}; pass it as SUBSET=PATH (e.g. training=EPIC_100_train.csv)")


def _epic_class_names(paths: Sequence[Path], part: str, rows: list[dict[str, str]]) -> dict[int, str]:
    """class id -> name of ``part`` (verb / noun): from its class CSV (columns id, key; the file whose name
    contains the part, or the only file given), else the most frequent ``part`` text among the rows of that id
    (ties: alphabetical)."""
    named = [p for p in paths if part in p.name.lower()]
    path = (
        named[0]
        if named
        else paths[0]
        if len(paths) == 1 and not any(o in paths[0].name.lower() for o in ("verb", "noun"))
        else None
    )
    if path is not None:
        return {int(_number(r["id"], "id", str(path))): r["key"] for r in _csv_rows(path, ["id", "key"])}
    texts: dict[int, Counter] = {}
    for row in rows:
        texts.setdefault(int(row[f"{part}_class"]), Counter())[row[part]] += 1
    return {cid: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for cid, c in texts.items()}


def convert_epic_kitchens(inputs: Sequence[Path], opts: ConvertOptions) -> Conversion:
    """EPIC-Kitchens-100 CSVs, each ``path`` (subset from its name) or ``subset=path``."""
    if opts.task not in EPIC_TASKS:
        raise DataError(f"epic-kitchens: task must be one of {EPIC_TASKS}, got {opts.task!r}")
    parts = ["verb", "noun"] if opts.task == "action" else [opts.task]
    required = ["video_id", "start_timestamp", "stop_timestamp"] + [c for p in parts for c in (p, f"{p}_class")]
    tables = []
    for item in map(str, inputs):
        subset, name = item.split("=", 1) if "=" in item else (_subset_of(Path(item).name), item)
        tables.append((subset, Path(name), _csv_rows(Path(name), required)))
    all_rows = [row for _, _, rows in tables for row in rows]
    names = {p: _epic_class_names([Path(c) for c in opts.classes], p, all_rows) for p in parts}
    builder = _Builder("epic-kitchens", tables[0][1], load_video_info(opts.video_info), opts)
    pairs: set[tuple[int, ...]] = set()

    def label_of(ids: tuple[int, ...], where: str) -> str:
        named = [names[p][cid] for p, cid in zip(parts, ids)]
        return action_label(named[0], named[1], where) if opts.task == "action" else named[0]

    for subset, path, rows in tables:
        for i, row in enumerate(rows, start=2):
            where = f"{path}, line {i}"
            ids = tuple(int(_number(row[f"{p}_class"], f"{p}_class", where)) for p in parts)
            for p, cid in zip(parts, ids):
                if cid not in names[p]:
                    raise DataError(f"{where}: {p}_class {cid} is not in the {p} class list")
            pairs.add(ids)
            builder.video(row["video_id"], subset)
            label = label_of(ids, where)
            builder.action(
                row["video_id"],
                label,
                _timestamp(row["start_timestamp"], where),
                _timestamp(row["stop_timestamp"], where),
            )
    if opts.task == "action":  # classes: the verb-noun pairs that occur, in (verb id, noun id) order
        order = [label_of(ids, "epic-kitchens class names") for ids in sorted(pairs)]
    else:  # every class of the class list, in id order (classes without actions included)
        order = [names[opts.task][cid] for cid in sorted(names[opts.task])]
    if len(set(order)) != len(order):
        raise DataError(f"epic-kitchens: class names are not unique for task {opts.task!r}; give the class CSVs")
    return builder.finish(order)


def convert_multithumos(inputs: Sequence[Path], opts: ConvertOptions) -> Conversion:
    """A folder of per-class text files (``<class>.txt``: ``video_id start end`` per line)."""
    if len(inputs) != 1 or not Path(inputs[0]).is_dir():
        raise DataError(f"multithumos: expected one folder of per-class .txt files, got {[str(p) for p in inputs]}")
    folder = Path(inputs[0])
    listed = _name_list(opts.classes[0]) if opts.classes else None
    files = {p.stem: p for p in sorted(folder.glob("*.txt")) if p.stem.lower() != "class_list"}
    names = listed or sorted(files)
    missing = [n for n in names if n not in files]
    if missing:
        raise DataError(f"{folder}: no annotation file for classes {missing[:5]} (expected <class>.txt)")
    info = load_video_info(opts.video_info)
    builder = _Builder("multithumos", folder, info, opts)
    for name in names:
        path = files[name]
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}, line {i}"
            if len(fields) != 3:
                raise DataError(f"{where}: expected 'video_id start end', got {line!r}")
            video_id = fields[0]
            subset = info.get(video_id, {}).get("subset") or _thumos_subset(video_id, where)
            builder.video(video_id, subset)
            builder.action(video_id, name, _number(fields[1], "start", where), _number(fields[2], "end", where))
    return builder.finish(names)


def _thumos_subset(video_id: str, where: str) -> str:
    for subset in ("validation", "test"):
        if f"_{subset}_" in video_id:
            return subset
    raise DataError(f"{where}: cannot tell the subset of video {video_id!r}; give --video-info with a subset column")


CONVERTERS: dict[str, Callable[[Sequence[Path], ConvertOptions], Conversion]] = {
    "activitynet": convert_activitynet,
    "hacs": lambda inputs, opts: convert_activitynet(inputs, opts, fmt="hacs"),
    "epic-kitchens": convert_epic_kitchens,
    "multithumos": convert_multithumos,
}


def convert(fmt: str, inputs: Sequence[str | Path], opts: ConvertOptions | None = None) -> Conversion:
    """Convert ``inputs`` of format ``fmt`` (a key of :data:`CONVERTERS`)."""
    if fmt not in CONVERTERS:
        raise DataError(f"unknown annotation format {fmt!r}; known: {sorted(CONVERTERS)}")
    return CONVERTERS[fmt]([Path(p) for p in inputs], opts or ConvertOptions())
