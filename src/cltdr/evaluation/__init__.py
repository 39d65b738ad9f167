"""Evaluation: ActivityNet-style detection mAP (SPEC section 3)."""

from cltdr.evaluation.map import MapResult, clean_ground_truth, evaluate_map, load_json, validate_predictions

__all__ = ["MapResult", "clean_ground_truth", "evaluate_map", "load_json", "validate_predictions"]
