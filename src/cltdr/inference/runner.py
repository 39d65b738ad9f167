"""Running a trained detector over videos: one whole video at a time, at its own length.

Produces ActivityNet result entries (seconds) and, for annotated splits, the mAP; :func:`test_run` is the one
"load a run, evaluate a split, write its predictions and metrics" that ``cltdr test``, ``cltdr demo`` and
``cltdr ablate`` share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from cltdr.config import Config
from cltdr.data.build import class_names, load_split, make_dataset
from cltdr.data.dataset import pad_features
from cltdr.data.grid import FeatureGrid
from cltdr.evaluation import MapResult, evaluate_map
from cltdr.evaluation.inputs import result_file
from cltdr.inference.fusion import evaluation_ground_truth, fuse_detections, load_class_scores
from cltdr.inference.postprocess import PostprocessOptions, postprocess_video, to_results
from cltdr.model.outputs import VideoPrediction
from cltdr.runs import RunDir, load_trained_model
from cltdr.utils.io import atomic_write_json, read_json


def postprocess_options(cfg: Config) -> PostprocessOptions:
    """The config's preset (``test.preset``) with the post-processing keys it sets explicitly."""
    return cfg.test.postprocess()


@torch.no_grad()
def raw_predictions(model, feats: torch.Tensor, device) -> VideoPrediction:
    """One video's features (C, T) -> the model's pre-NMS output on CPU (``Detector.predict``), for
    post-processing or inspection."""
    model.eval()
    x, mask = pad_features([feats.to(device)], model.divisor)
    return model.predict(x, mask)[0].cpu()


def detect(
    model,
    feats: torch.Tensor,
    grid: FeatureGrid,
    duration: float,
    opts: PostprocessOptions,
    class_names: list[str],
    device,
) -> list[dict]:
    """One video's features (C, T) -> its result entries, sorted by score."""
    detections = postprocess_video(*raw_predictions(model, feats, device), opts)
    return to_results(detections, grid, duration, class_names)


def predict_dataset(
    model, dataset, opts: PostprocessOptions, class_names: list[str], device, progress: bool = True
) -> dict[str, list[dict]]:
    results = {}
    for i in tqdm(range(len(dataset)), desc="inference", disable=not progress, leave=False, dynamic_ncols=True):
        sample = dataset[i]
        results[sample.video_id] = detect(model, sample.feats, sample.grid, sample.duration, opts, class_names, device)
    return results


@dataclass
class SplitResult:
    results: dict[str, list[dict]]  # video id -> ActivityNet result entries
    metrics: MapResult
    fused: Optional[SplitResult] = None  # with external class scores, when dataset.fusion is set (fusion.py)

    @property
    def headline(self) -> SplitResult:
        """The figures a run reports: the fused ones when there are, else these."""
        return self.fused or self


def evaluate_split(
    cfg: Config, model, subset: str, class_names: list[str], device, progress: bool = True
) -> SplitResult:
    split = load_split(cfg, subset)
    dataset = make_dataset(cfg, split, training=False)
    results = predict_dataset(model, dataset, postprocess_options(cfg), class_names, device, progress)
    gt = read_json(cfg.dataset.annotation_file, "annotation")
    metrics = evaluate_map(evaluation_ground_truth(cfg, gt), {"results": results}, subset, cfg.test.tiou_thresholds)
    fused = None
    if cfg.dataset.fusion is not None:  # the same detections with external class scores, against the real labels
        f = cfg.dataset.fusion
        fused_results = fuse_detections(
            results, load_class_scores(f.score_file), topk=f.topk, max_segments=f.max_segments
        )
        fused = SplitResult(
            fused_results, evaluate_map(gt, {"results": fused_results}, subset, cfg.test.tiou_thresholds)
        )
    return SplitResult(results, metrics, fused)


def write_outputs(out_dir: str | Path, split: SplitResult) -> list[Path]:
    """Write the predictions and metrics of ``split`` (and of its fused results) into ``out_dir``, in the run
    layout (``cltdr.runs``); returns the paths written."""
    out = RunDir(out_dir)
    written = []
    for fused, part in ((False, split), (True, split.fused)):
        if part is not None:
            written += [
                atomic_write_json(out.predictions(fused), result_file(part.results), indent=None),
                atomic_write_json(out.metrics(fused), part.metrics.to_json()),
            ]
    return written


@dataclass
class TestedRun:
    """A run tested by :func:`test_run`: its results, where they were written, and the model that made them."""

    split: SplitResult
    subset: str
    written: list[Path]
    cfg: Config
    model: torch.nn.Module
    device: torch.device


def test_run(
    run_dir: str | Path,
    *,
    subset: str | None = None,
    out_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    weights: str = "ema",
    preset: str | None = None,
    progress: bool = True,
):
    """Load a run's evaluation model, evaluate it on ``subset`` (default: the test subset) and write the
    outputs into ``out_dir`` (default: the run directory)."""
    cfg, model, dev = load_trained_model(run_dir, checkpoint, device, weights)
    if preset:
        cfg.test.preset = preset
    subset = subset or cfg.dataset.test_subset
    split = evaluate_split(cfg, model, subset, class_names(cfg), dev, progress=progress)
    written = write_outputs(out_dir or run_dir, split)
    return TestedRun(split, subset, written, cfg, model, dev)


@dataclass
class FileDetections:
    """The detections of one feature file without annotations (``cltdr detect``)."""

    video_id: str  # the file's stem
    steps: int  # stored feature steps
    duration: float  # seconds the stored features span
    results: list[dict]  # ActivityNet result entries, best first


def detect_file(
    cfg: Config,
    model,
    device,
    path: str | Path,
    *,
    fps: float,
    feat_stride: float | None = None,
    num_frames: float | None = None,
    top: int | None = None,
) -> FileDetections:
    """Detect actions in one feature file (T, C), read and prepared as the run's dataset was (layout, keys,
    downsampling, resizing); ``feat_stride`` / ``num_frames`` replace the stored grid of the config."""
    import dataclasses

    from cltdr.data.build import feature_store, pyramid_name
    from cltdr.data.features import check_length, load_features

    path = Path(path)
    store = dataclasses.replace(
        feature_store(cfg),
        feat_stride=feat_stride or cfg.dataset.feat_stride,
        num_frames=num_frames or cfg.dataset.num_frames,
    )
    stored = load_features(
        path, video_id=path.stem, input_dim=cfg.dataset.input_dim, keys=store.keys, layout=store.layout
    )
    duration = store.stored_grid(fps).span_seconds(stored.shape[0])
    feats, grid = store.prepare(stored, fps)
    check_length(feats.shape[0], model.divisor, pyramid_name(cfg), f"video {path.stem!r}: feature file {path}")
    results = detect(
        model,
        torch.from_numpy(feats).T.contiguous(),
        grid,
        duration,
        postprocess_options(cfg),
        class_names(cfg),
        device,
    )
    return FileDetections(path.stem, stored.shape[0], duration, results[:top])
