"""EPIC-Kitchens-100 verb, noun and action mAP from ``"verb,noun"`` labels.

Input format: ground-truth labels are ``"verb,noun"`` (class names or ids, e.g. ``"take,cup"`` or
``"3,12"``), one comma. Predictions are either one file with ``"verb,noun"`` labels (an action detector), from
which the verb and noun tables use the label's part, or, for the verb and noun tables, separate files of a
verb-only and a noun-only detector whose labels are bare verbs / nouns. The action mAP treats each
``"verb,noun"`` pair as a class, so a prediction matches a ground truth only when both its verb and its noun do.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from cltdr.errors import DataError
from cltdr.evaluation.inputs import database_of, results_of
from cltdr.evaluation.map import MapResult, evaluate_map

TASKS = ("verb", "noun", "action")
SEPARATOR = ","  # between the verb and the noun of an action label (`cltdr convert epic-kitchens --task action`)


def action_label(verb: str, noun: str, where: str = "action label") -> str:
    """``"verb,noun"``: the one spelling of an action label, as the converter writes it and this module reads it."""
    for part in (verb, noun):
        if SEPARATOR in part or not part.strip():
            raise DataError(f"{where}: {part!r} cannot be part of a 'verb,noun' label (empty, or holds a comma)")
    return f"{verb.strip()}{SEPARATOR}{noun.strip()}"


def split_label(label: object, where: str) -> tuple[str, str]:
    """``"verb,noun"`` -> (verb, noun), spaces around the parts removed."""
    parts = label.split(SEPARATOR) if isinstance(label, str) else []
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DataError(
            f"{where}: label {label!r} is not 'verb,noun' (EPIC-Kitchens labels join the verb and "
            "the noun with one comma, e.g. 'take,cup' or '3,12')"
        )
    return parts[0].strip(), parts[1].strip()


def _relabel(label: object, task: str, where: str) -> str:
    verb, noun = split_label(label, where)
    return {"verb": verb, "noun": noun, "action": action_label(verb, noun)}[task]


def task_ground_truth(ground_truth: Mapping, task: str) -> dict:
    """The annotation object with every label reduced to the task's part."""
    database = {}
    for video, info in database_of(ground_truth).items():
        if not isinstance(info, dict):
            database[video] = info
            continue
        anns = [
            {**ann, "label": _relabel(ann.get("label"), task, f"ground truth: video {video!r}, annotation {i}")}
            if isinstance(ann, dict)
            else ann
            for i, ann in enumerate(info.get("annotations", []))
        ]
        database[video] = {**info, "annotations": anns}
    return {"database": database}


def task_predictions(predictions: Mapping, task: str, source: str) -> dict:
    """The result object with every label reduced to the task's part (entries are validated later)."""
    results = {}
    for video, entries in results_of(predictions, source).items():
        if not isinstance(entries, list):
            results[video] = entries
            continue
        results[video] = [
            {**e, "label": _relabel(e.get("label"), task, f"{source}: video {video!r}, entry {i}")}
            if isinstance(e, dict) and "label" in e
            else e
            for i, e in enumerate(entries)
        ]
    return {"results": results}


def evaluate_epic(
    ground_truth: Mapping,
    subset: str,
    thresholds: Sequence[float],
    actions: Mapping | None = None,
    verbs: Mapping | None = None,
    nouns: Mapping | None = None,
    source: str = "predictions",
) -> dict[str, MapResult]:
    """Verb, noun and action mAP. ``actions``: predictions with ``"verb,noun"`` labels; ``verbs`` / ``nouns``:
    separate predictions with bare labels, which replace the parts of ``actions`` for their table. A table
    without predictions is left out (the action table needs ``actions``)."""
    sources = {"verb": verbs, "noun": nouns, "action": None}
    out = {}
    for task in TASKS:
        given = sources[task]
        if given is not None:
            pred = given
        elif actions is not None:
            pred = task_predictions(actions, task, source)
        else:
            continue
        out[task] = evaluate_map(task_ground_truth(ground_truth, task), pred, subset, thresholds)
    return out
