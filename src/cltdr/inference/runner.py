"""Running a trained detector over videos: one whole video at a time, at its own length.

Produces ActivityNet result entries (seconds) and, for annotated splits, the mAP; :func:`test_run` is the one
"load a run, evaluate a split, write its predictions and metrics" that ``cltdr test``, ``cltdr demo`` and
``cltdr ablate`` share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from cltdr.config import Config
from cltdr.data.build import class_names, load_split, make_dataset
from cltdr.data.dataset import TALDataset, pad_features
from cltdr.data.features import FeatureStore, StoredFeatures, check_length
from cltdr.data.grid import FeatureGrid
from cltdr.evaluation import MapResult, evaluate_map
from cltdr.evaluation.inputs import result_file
from cltdr.inference.fusion import evaluation_ground_truth, fuse_detections, load_class_scores
from cltdr.inference.postprocess import PostprocessOptions, to_results
from cltdr.inference.windowed import detect_windows
from cltdr.model.outputs import VideoPrediction
from cltdr.runs import RunDir, load_trained_model, run_config, select_device
from cltdr.utils.amp import autocast
from cltdr.utils.distributed import Process, gather, shard, start
from cltdr.utils.io import atomic_write_json, read_json


def postprocess_options(cfg: Config) -> PostprocessOptions:
    """The config's preset (``test.preset``) with the post-processing keys it sets explicitly."""
    return cfg.test.postprocess()


@torch.no_grad()
def raw_predictions(model, feats: torch.Tensor, device, amp: str = "none") -> VideoPrediction:
    """One video's features (C, T) -> the model's pre-NMS output on CPU in fp32 (``Detector.predict``), for
    post-processing or inspection; ``amp``: the network under autocast ('bf16', 'fp16') or not ('none')."""
    model.eval()
    x, mask = pad_features([feats.to(device)], model.divisor)
    with autocast(torch.device(device), amp):
        prediction = model.predict(x, mask)[0]
    return prediction.cpu()


@dataclass
class FeatureReader:
    """One video's model input, read a window of steps at a time: ``read(start, stop)`` -> (C, stop - start)."""

    num_steps: int  # T, input steps of the video
    read: Callable[[int, int], torch.Tensor]

    @staticmethod
    def of_tensor(feats: torch.Tensor) -> FeatureReader:
        """Features (C, T) already in memory."""
        return FeatureReader(feats.shape[-1], lambda start, stop: feats[:, start:stop])

    @staticmethod
    def of_store(store: FeatureStore, stored: StoredFeatures, fps: float) -> FeatureReader:
        """A video's stored features prepared as ``store`` prepares them: read lazily, every
        ``downsample_rate``-th step, or, resized to a fixed length, read whole and resized at once."""
        if store.resize_to is not None:
            return FeatureReader.of_tensor(torch.from_numpy(store.prepare(stored.read(), fps)[0].T.copy()))
        return FeatureReader.of_stored(stored, store.downsample_rate)

    @staticmethod
    def of_stored(stored: StoredFeatures, downsample_rate: int = 1) -> FeatureReader:
        """Stored features read lazily, every ``downsample_rate``-th step (FeatureStore.prepare without resizing)."""
        r = downsample_rate

        def read(start: int, stop: int) -> torch.Tensor:
            rows = stored.read(start * r, min((stop - 1) * r + 1, stored.num_steps))[::r]
            return torch.from_numpy(np.ascontiguousarray(rows.T))

        return FeatureReader(-(-stored.num_steps // r), read)


def detect(
    model,
    feats: torch.Tensor | FeatureReader,
    grid: FeatureGrid,
    duration: float,
    opts: PostprocessOptions,
    class_names: list[str],
    device,
    *,
    window: tuple[int, int] | None = None,
    progress: bool = False,
    amp: str = "none",
) -> list[dict]:
    """One video's features (C, T), or a reader of them, -> its result entries, sorted by score. ``window``:
    (window, overlap) in steps, for windowed inference of a video longer than the window (windowed.py); None:
    the whole video at once. ``amp``: see :func:`raw_predictions`."""
    reader = feats if isinstance(feats, FeatureReader) else FeatureReader.of_tensor(feats)
    w, overlap = window or (max(reader.num_steps, 1), 0)
    detections = detect_windows(
        lambda start, stop: raw_predictions(model, reader.read(start, stop), device, amp),
        reader.num_steps,
        opts,
        window=w,
        overlap=overlap,
        progress=progress,
    )
    return to_results(detections, grid, duration, class_names)


def _test_input(dataset: TALDataset, index: int) -> tuple[str, FeatureReader, FeatureGrid, float]:
    """A test video's id, model input (read window by window unless resized to a fixed length), grid, duration."""
    rec, store = dataset.videos[index], dataset.store
    stored = store.open(rec.video_id, rec.subset)
    reader = FeatureReader.of_store(store, stored, rec.fps)
    check_length(reader.num_steps, dataset.min_length, dataset.min_length_reason, stored.where)
    return rec.video_id, reader, store.grid(rec.fps, stored.num_steps), rec.duration


def predict_dataset(
    model,
    dataset: TALDataset,
    opts: PostprocessOptions,
    class_names: list[str],
    device,
    progress: bool = True,
    window: tuple[int, int] | None = None,
    *,
    amp: str = "none",
    proc: Process | None = None,
) -> dict[str, list[dict]]:
    """Every video of a test dataset -> its result entries, in the dataset's order; ``window``, ``amp``: see
    :func:`detect`. ``proc``: a process of a distributed run computes its share of the videos
    (``cltdr.utils.distributed.shard``) and every process returns all of them, gathered (each video's entries
    do not depend on which process computed them: the same as in one process)."""
    proc = proc or Process()
    shown = progress and proc.main
    mine = {}
    for i in tqdm(shard(len(dataset), proc), desc="inference", disable=not shown, leave=False, dynamic_ncols=True):
        video_id, reader, grid, duration = _test_input(dataset, i)
        mine[video_id] = detect(model, reader, grid, duration, opts, class_names, device, window=window, amp=amp)
    if not proc.distributed:
        return mine
    gathered = {k: v for part in gather(mine) for k, v in part.items()}
    return {rec.video_id: gathered[rec.video_id] for rec in dataset.videos}


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
    cfg: Config,
    model,
    subset: str,
    class_names: list[str],
    device,
    progress: bool = True,
    proc: Process | None = None,
) -> SplitResult:
    """The detections and mAP of ``subset`` (``test.amp``: the precision of the network); ``proc``: the videos
    split over the processes of a distributed run (:func:`predict_dataset`), every process returning the whole."""
    split = load_split(cfg, subset)
    dataset = make_dataset(cfg, split, training=False)
    results = predict_dataset(
        model,
        dataset,
        postprocess_options(cfg),
        class_names,
        device,
        progress,
        window=cfg.inference_window(),
        amp=cfg.test.amp,
        proc=proc,
    )
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
    amp: str | None = None,
):
    """Load a run's evaluation model, evaluate it on ``subset`` (default: the test subset) and write the
    outputs into ``out_dir`` (default: the run directory). ``amp`` replaces ``test.amp``.

    Launched by torchrun, each process evaluates its share of the videos on its own device
    (``cltdr.utils.distributed.start``), and only the first writes the outputs (``written`` is empty in the
    others)."""
    proc, dev = start(select_device(device if device != "auto" else run_config(run_dir).train.device))
    cfg, model, dev = load_trained_model(run_dir, checkpoint, str(dev), weights)
    if preset:
        cfg.test.preset = preset
    if amp:
        cfg.test.amp = amp
    subset = subset or cfg.dataset.test_subset
    split = evaluate_split(cfg, model, subset, class_names(cfg), dev, progress=progress, proc=proc)
    written = write_outputs(out_dir or run_dir, split) if proc.main else []
    return TestedRun(split, subset, written, cfg, model, dev)


@dataclass
class FileDetections:
    """The detections of one feature file without annotations (``cltdr detect``)."""

    video_id: str  # the file's stem
    steps: int  # stored feature steps
    duration: float  # seconds the stored features span
    results: list[dict]  # ActivityNet result entries, best first


def detect_stored(
    cfg: Config,
    model,
    device,
    stored: StoredFeatures,
    *,
    fps: float,
    feat_stride: float | None = None,
    num_frames: float | None = None,
    duration: float | None = None,
    progress: bool = False,
) -> tuple[float, list[dict]]:
    """Detect actions in one video's stored features, prepared as the run's dataset prepares them (downsampling,
    resizing); ``feat_stride`` / ``num_frames`` replace the stored grid of the config. Returns the video's
    duration (``duration``, else the seconds the features span) and its result entries, best first. A video
    longer than the config's window is run window by window (``progress``: a bar over them). ``model``: a
    Detector or an exported network (``cltdr.deploy.ExportedModel``)."""
    import dataclasses

    from cltdr.data.build import feature_store, pyramid_name

    store = dataclasses.replace(
        feature_store(cfg),
        feat_stride=feat_stride or cfg.dataset.feat_stride,
        num_frames=num_frames or cfg.dataset.num_frames,
    )
    if duration is None:
        duration = store.stored_grid(fps).span_seconds(stored.num_steps)
    grid = store.grid(fps, stored.num_steps)
    reader = FeatureReader.of_store(store, stored, fps)
    check_length(reader.num_steps, model.divisor, pyramid_name(cfg), stored.where)
    results = detect(
        model,
        reader,
        grid,
        duration,
        postprocess_options(cfg),
        class_names(cfg),
        device,
        window=cfg.inference_window(),
        progress=progress,
        amp=cfg.test.amp,
    )
    return duration, results


def open_feature_file(cfg: Config, path: str | Path) -> StoredFeatures:
    """One feature file (T, C), opened with the run's layout and keys; its video id is the file's stem."""
    from cltdr.data.build import feature_store
    from cltdr.data.features import open_features

    path, store = Path(path), feature_store(cfg)
    return open_features(
        [(path, None)], video_id=path.stem, input_dim=cfg.dataset.input_dim, keys=store.keys, layout=store.layout
    )


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
    progress: bool = False,
) -> FileDetections:
    """Detect actions in one feature file (T, C), read and prepared as the run's dataset was (layout, keys,
    downsampling, resizing): :func:`detect_stored` of the opened file."""
    stored = open_feature_file(cfg, path)
    duration, results = detect_stored(
        cfg, model, device, stored, fps=fps, feat_stride=feat_stride, num_frames=num_frames, progress=progress
    )
    return FileDetections(Path(path).stem, stored.num_steps, duration, results[:top])
