"""Evaluation: ActivityNet-style detection mAP and recall (SPEC section 3), proposal AR@AN, EPIC-Kitchens
verb / noun / action, DETAD-style error diagnosis, and export to CSV / DETAD."""

from cltdr.evaluation.inputs import GroundTruth, Predictions, clean_ground_truth, result_file, validate_predictions
from cltdr.evaluation.map import MapResult, evaluate_map
from cltdr.evaluation.matching import Matching, match

__all__ = [
    "GroundTruth",
    "MapResult",
    "Matching",
    "Predictions",
    "clean_ground_truth",
    "evaluate_map",
    "match",
    "result_file",
    "validate_predictions",
]
