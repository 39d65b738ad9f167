"""Running a trained detector over videos: one whole video at a time, at its own length.

Produces ActivityNet result entries (seconds) and, for annotated splits, the mAP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..config import Config
from ..data.build import load_split, make_dataset
from ..data.dataset import pad_features
from ..data.grid import FeatureGrid
from ..evaluation import MapResult, evaluate_map
from ..evaluation.map import load_json
from ..model.outputs import VideoPrediction
from .fusion import evaluation_ground_truth, fusion_stage
from .postprocess import PostprocessOptions, postprocess_video, to_results


def postprocess_options(cfg: Config) -> PostprocessOptions:
    """The config's preset (``test.preset``) with the post-processing keys it sets explicitly."""
    return PostprocessOptions.preset(cfg.test.preset, **cfg.test.postprocess_overrides())


@torch.no_grad()
def raw_predictions(model, feats: torch.Tensor, device) -> VideoPrediction:
    """One video's features (C, T) -> the model's pre-NMS output on CPU, per level l: scores (T_l, K) and
    class-wise segments (T_l, K, 2) in grid steps (``Detector.predict``), for post-processing or inspection."""
    model.eval()
    x, mask = pad_features([feats.to(device)], model.divisor)
    return model.predict(x, mask)[0].cpu()


def detect(model, feats: torch.Tensor, grid: FeatureGrid, duration: float, opts: PostprocessOptions,
           class_names: list[str], device) -> list[dict]:
    """One video's features (C, T) -> its result entries, sorted by score."""
    detections = postprocess_video(*raw_predictions(model, feats, device), opts)
    return to_results(detections, grid, duration, class_names)


def predict_dataset(model, dataset, opts: PostprocessOptions, class_names: list[str], device,
                    progress: bool = True) -> dict[str, list[dict]]:
    results = {}
    for i in tqdm(range(len(dataset)), desc="inference", disable=not progress, leave=False, dynamic_ncols=True):
        sample = dataset[i]
        results[sample.video_id] = detect(model, sample.feats, sample.grid, sample.duration, opts, class_names, device)
    return results


@dataclass
class SplitResult:
    results: dict[str, list[dict]]  # video id -> ActivityNet result entries
    metrics: MapResult
    fused: SplitResult | None = None  # with external class scores, when dataset.fusion is set (fusion.py)


def evaluate_split(cfg: Config, model, subset: str, class_names: list[str], device, progress: bool = True) -> SplitResult:
    split = load_split(cfg, subset)
    dataset = make_dataset(cfg, split, training=False)
    results = predict_dataset(model, dataset, postprocess_options(cfg), class_names, device, progress)
    gt = load_json(cfg.dataset.annotation_file, "annotation")
    metrics = evaluate_map(evaluation_ground_truth(cfg, gt), {"results": results}, subset, cfg.test.tiou_thresholds)
    return SplitResult(results, metrics, fused=fusion_stage(cfg, results, gt, subset))
