"""The Python API: a trained detector as an object, features in, typed detections out.

    from cltdr import Localizer

    localizer = Localizer.from_run("runs/thumos", checkpoint="best", device="cpu", preset="deployment")
    found = localizer(features, fps=30)            # features (T, C): numpy array or tensor, as stored
    for d in found:                                # Detection(label, score, start, end), seconds, best first
        print(d.label, d.score, d.start, d.end)
    found.to_activitynet(), found.to_csv(), found.to_srt()
    by_video = localizer.detect_files(["a.npy", "b.npy"], fps=30)   # {video id (file stem): Detections}
    found = localizer.detect_video("match.mp4")    # a run trained on `cltdr extract` features: extract, detect

``Localizer.from_export(FILE)`` runs a file of ``cltdr export-model`` (TorchScript or ONNX) through the same
preparation and post-processing (``cltdr.deploy``). Each localizer holds its own model and config; a call holds
no state between calls and changes nothing in the localizer (no module globals, gradients off per call), so
several localizers live in one process and threads may share one. This API is versioned with the package
(``cltdr.__version__``, CHANGELOG.md): names and signatures here change only with a new minor version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from cltdr.config import Config
from cltdr.data.features import StoredFeatures
from cltdr.errors import CltdrError

__all__ = ["Detection", "Detections", "Localizer", "result_file"]

PathLike = str | Path


@dataclass(frozen=True)
class Detection:
    """One detected action: its class name, score in [0, 1], and start / end in seconds (0 <= start < end)."""

    label: str
    score: float
    start: float
    end: float

    @property
    def length(self) -> float:
        """Seconds the action lasts."""
        return self.end - self.start

    def to_activitynet(self) -> dict[str, Any]:
        """``{"label", "score", "segment": [start, end]}``, an entry of the ActivityNet result format."""
        return {"label": self.label, "score": self.score, "segment": [self.start, self.end]}


@dataclass(frozen=True)
class Detections:
    """The detections of one video, best first: iterate, index or ``len()`` them as a sequence of
    :class:`Detection`."""

    video_id: str
    items: tuple[Detection, ...]
    duration: float  # seconds of the video (the span of its features unless given)
    num_steps: int  # feature steps as given (before any downsampling or resizing of the run)

    @staticmethod
    def from_results(video_id: str, entries: Iterable[Mapping[str, Any]], duration: float, num_steps: int):
        """From ActivityNet result entries (the inference path's output)."""
        items = tuple(Detection(e["label"], float(e["score"]), *map(float, e["segment"])) for e in entries)
        return Detections(video_id, items, duration, num_steps)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Detection]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Detection:
        return self.items[index]

    def top(self, n: int) -> Detections:
        """The ``n`` best detections."""
        return Detections(self.video_id, self.items[:n], self.duration, self.num_steps)

    def above(self, score: float) -> Detections:
        """The detections scored at least ``score``."""
        return Detections(
            self.video_id, tuple(d for d in self.items if d.score >= score), self.duration, self.num_steps
        )

    def to_activitynet(self) -> list[dict[str, Any]]:
        """The video's entries of an ActivityNet result file (see :func:`result_file` for a whole file)."""
        return [d.to_activitynet() for d in self.items]

    def to_csv(self) -> str:
        """CSV text, one row per detection: ``video,start,end,label,score`` (as ``cltdr export --format csv``)."""
        from cltdr.evaluation.export import predictions_csv

        return predictions_csv(result_file([self]), source=f"detections of {self.video_id!r}")

    def to_srt(self) -> str:
        """SRT subtitles, one cue ``label (score)`` per detection, by start time (``cltdr detect --format srt``)."""
        from cltdr.evaluation.export import srt_text

        return srt_text(self.to_activitynet())


def result_file(found: Iterable[Detections]) -> dict[str, Any]:
    """An ActivityNet result file ``{"version", "results": {video: [entries]}, "external_data"}`` of several
    videos, as ``cltdr detect`` writes it."""
    from cltdr.evaluation import result_file as write

    return write({d.video_id: d.to_activitynet() for d in found})


@dataclass(frozen=True)
class Localizer:
    """A trained detector with its config: features (T, C) -> :class:`Detections`. Build one with
    :meth:`from_run` or :meth:`from_export`."""

    config: Config  # the run's config (its ``test`` section chooses the post-processing)
    model: Any = field(repr=False)  # a Detector in eval mode, or a cltdr.deploy.ExportedModel
    device: torch.device
    class_names: tuple[str, ...]
    card_file: Optional[Path] = None  # the run's feature card (RUN/feature_card.json), when it was trained on
    # features of `cltdr extract`: how detect_video extracts, and what detect_file's features must match

    @staticmethod
    def from_run(
        run_dir: PathLike,
        *,
        checkpoint: Optional[PathLike] = None,
        device: str = "auto",
        preset: Optional[str] = None,
        weights: str = "ema",
    ) -> Localizer:
        """A run directory's model. ``checkpoint``: 'last', 'best' or a path (default: best when the run kept
        one, else last); ``device``: 'auto' (the run's ``train.device``), 'cpu', 'cuda', 'cuda:N';
        ``preset``: 'benchmark' or 'deployment' post-processing, replacing the run's ``test.preset`` (keys its
        config sets still override); ``weights``: 'ema' or 'raw'."""
        from cltdr.runs import RunDir, load_trained_model

        cfg, model, dev = load_trained_model(run_dir, checkpoint, device, weights)
        return Localizer._of(cfg, model, dev, preset, RunDir(run_dir).feature_card)

    @staticmethod
    def from_export(
        path: PathLike,
        *,
        run_dir: Optional[PathLike] = None,
        preset: Optional[str] = None,
        providers: Optional[list[str]] = None,
    ) -> Localizer:
        """A file of ``cltdr export-model`` (TorchScript or ONNX, told apart by content), on the CPU; the
        config comes from the file unless ``run_dir`` names a run whose config to use instead. ``providers``:
        ONNX Runtime execution providers (default CPU)."""
        from cltdr.deploy import load_exported
        from cltdr.runs import RunDir, run_config

        exported = load_exported(path, providers=providers)
        cfg = exported.info.config if run_dir is None else run_config(run_dir)
        card = None if run_dir is None else RunDir(run_dir).feature_card
        return Localizer._of(cfg, exported, torch.device("cpu"), preset, card)

    @staticmethod
    def _of(
        cfg: Config, model: Any, device: torch.device, preset: Optional[str], card_file: Optional[Path] = None
    ) -> Localizer:
        from cltdr.config import PRESETS
        from cltdr.data.build import class_names

        cfg = cfg.model_copy(deep=True)
        if preset is not None:
            if preset not in PRESETS:
                raise CltdrError(f"unknown post-processing preset {preset!r}; expected one of {sorted(PRESETS)}")
            cfg.test.preset = preset  # type: ignore[assignment]  # checked just above
        card = card_file if card_file is not None and card_file.is_file() else None
        return Localizer(cfg, model, device, tuple(class_names(cfg)), card)

    @property
    def feature_card(self) -> Any:
        """The run's :class:`~cltdr.extract.card.FeatureCard`, or None (not trained on extracted features)."""
        from cltdr.extract.card import read_card

        return None if self.card_file is None else read_card(self.card_file)

    @property
    def default_fps(self) -> Optional[float]:
        """The frame rate assumed when a call gives none: ``dataset.feat_fps``, else ``dataset.default_fps``."""
        return self.config.dataset.feat_fps or self.config.dataset.default_fps

    @property
    def input_dim(self) -> int:
        """C, the channels the features must have."""
        return self.config.dataset.input_dim

    def _fps(self, fps: Optional[float]) -> float:
        fps = self.default_fps if fps is None else fps
        if fps is None:
            raise CltdrError("the run's config has no dataset.default_fps: pass fps= (frames per second of the video)")
        if not fps > 0:
            raise CltdrError(f"fps={fps:g}: the frame rate of the video must be > 0")
        return float(fps)

    def __call__(
        self,
        features: np.ndarray | torch.Tensor,
        *,
        fps: Optional[float] = None,
        duration: Optional[float] = None,
        video_id: str = "video",
        feat_stride: Optional[float] = None,
        num_frames: Optional[float] = None,
        progress: bool = False,
    ) -> Detections:
        """Detect actions in one video's features (T, C), as stored (the run's downsampling or resizing is
        applied here). ``fps``: frames per second of the video (default: :attr:`default_fps`); ``duration``:
        seconds to clip detections to (default: the span of the features); ``feat_stride`` / ``num_frames``:
        the features' grid, if not the config's."""
        array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        stored = StoredFeatures.of_array(array, self.input_dim, f"video {video_id!r}: features")
        return self._detect(stored, video_id, fps, duration, feat_stride, num_frames, progress)

    def detect_file(
        self,
        path: PathLike,
        *,
        fps: Optional[float] = None,
        feat_stride: Optional[float] = None,
        num_frames: Optional[float] = None,
        progress: bool = False,
    ) -> Detections:
        """Detect actions in one feature file (read with the run's layout and keys; the video id is its stem)."""
        from cltdr.inference.runner import open_feature_file

        self._check_card_of(path)
        stored = open_feature_file(self.config, path)
        return self._detect(stored, Path(path).stem, fps, None, feat_stride, num_frames, progress)

    def _check_card_of(self, path: PathLike) -> None:
        """Refuse a feature file whose folder's card disagrees with the run's (both cards named)."""
        from cltdr.extract.card import card_path, check_same, find_card

        folder = Path(path).parent
        beside = find_card(folder)
        if self.card_file is not None and beside is not None:
            check_same(
                self.feature_card,
                str(self.card_file),
                beside,
                str(card_path(folder)),
                hint=f"{path} was not made as the run's features were: extract its video again with the run's "
                "settings (`cltdr detect RUN_DIR VIDEO` does)",
            )

    def backbone(self, weights: Optional[PathLike] = None) -> Any:
        """The backbone the run's features were extracted with (its feature card), on this localizer's device,
        checked against the card; ``weights``: where its weights file (or directory) is now, if it moved."""
        from cltdr.extract.extract import backbone_of_card

        if self.card_file is None:
            raise CltdrError(
                "this run was not trained on features of `cltdr extract` (its directory has no feature_card.json), "
                "so it does not know how to extract a video: extract it with the backbone its features came from "
                "and pass the feature file"
            )
        return backbone_of_card(self.feature_card, str(self.card_file), weights).to(self.device)

    def detect_video(
        self,
        path: PathLike,
        *,
        backbone: Any = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> Detections:
        """Extract one video file's features as the run's feature card says, then detect (the video id is the
        file's stem, the duration the video's). ``backbone``: one from :meth:`backbone`, to reuse over videos."""
        from cltdr.extract.extract import ExtractSettings, extract_video

        backbone = backbone or self.backbone()
        card = self.feature_card
        found = extract_video(path, backbone, ExtractSettings.of_card(card, batch_size), self.device, progress=progress)
        stored = StoredFeatures.of_array(found.features, self.input_dim, f"video {path}: features")
        return self._detect(stored, Path(path).stem, card.fps, found.duration, None, None, progress)

    def iter_files(self, paths: Sequence[PathLike], **options: Any) -> Iterator[Detections]:
        """:meth:`detect_file` of each path in turn, lazily (``options``: its keywords); refuses at once, before
        any detection, files that share a video id."""
        check_video_ids(paths)
        return (self.detect_file(path, **options) for path in paths)

    def detect_files(self, paths: Sequence[PathLike], **options: Any) -> dict[str, Detections]:
        """:meth:`detect_file` of each path: {video id: detections}, in the order given."""
        return {found.video_id: found for found in self.iter_files(paths, **options)}

    def _detect(
        self,
        stored: StoredFeatures,
        video_id: str,
        fps: Optional[float],
        duration: Optional[float],
        feat_stride: Optional[float],
        num_frames: Optional[float],
        progress: bool,
    ) -> Detections:
        from cltdr.inference.runner import detect_stored

        with torch.inference_mode():
            seconds, results = detect_stored(
                self.config,
                self.model,
                self.device,
                stored,
                fps=self._fps(fps),
                feat_stride=feat_stride,
                num_frames=num_frames,
                duration=duration,
                progress=progress,
            )
        return Detections.from_results(video_id, results, seconds, stored.num_steps)


def check_video_ids(paths: Sequence[PathLike]) -> None:
    """Refuse files whose stems (their video ids) clash."""
    stems: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.stem in stems:
            raise CltdrError(
                f"{stems[path.stem]} and {path} have the same stem {path.stem!r}, the video id of the "
                "prediction file: rename one (or run them separately)"
            )
        stems[path.stem] = path
