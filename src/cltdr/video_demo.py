"""``cltdr demo --video``: synthetic videos -> ``cltdr extract`` -> train -> test -> SRT and timeline of a video.

Every step is the one a user runs on their own videos (``cltdr extract``, a config whose feature folder's card
fills the grid keys, ``cltdr train``, ``cltdr test``, ``cltdr detect RUN VIDEO --format srt``), on the rendered
benchmark of :mod:`cltdr.data.synth_video` with the randomly initialised ``tiny3d`` backbone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

DEMO_VIDEO_CONFIG = Path(__file__).parent / "configs" / "demo_video.yaml"
BACKBONE = "tiny3d"
FPS, NUM_FRAMES, STRIDE = 10.0, 8, 2
SRT_MIN_SCORE = 0.3  # the subtitles show the confident detections only (the JSON keeps them all)


@dataclass
class VideoDemo:
    average_mAP: float
    table: str  # the mAP table
    subtitles: list[Path]  # each test video's detections (scored >= SRT_MIN_SCORE) as SRT subtitles
    timelines: list[Path]  # ... and its best detections against its ground truth, as a timeline PNG
    written: list[Path]


def run_video_demo(
    out: str | Path,
    *,
    preset: str = "demo",
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    overrides: list[str] | None = None,
) -> VideoDemo:
    """The whole pipeline into ``out``: videos/, annotations.json, features/, run/, the predictions and metrics,
    and for each test video, detected again from its video file: ``subtitles/<video_id>.srt`` and
    ``timelines/<video_id>.png``. ``overrides``: ``key=value`` config overrides (tests train shorter)."""
    from cltdr.api import Localizer
    from cltdr.config import apply_overrides, config_from_dict
    from cltdr.data.synth_video import render
    from cltdr.extract.card import fill_config
    from cltdr.extract.extract import ExtractSettings, extract_folder
    from cltdr.inference.runner import test_run
    from cltdr.runs import RunDir
    from cltdr.training.trainer import Trainer
    from cltdr.utils.io import atomic_write_text, read_json
    from cltdr.viz.figures import plot_timeline
    from cltdr.viz.points import timeline

    out, start = Path(out), time.time()
    videos = render(out, preset, seed)
    echo(f"[demo] rendered {videos.video_dir} ({time.time() - start:.0f} s); extracting features with {BACKBONE}")
    features = out / "features"
    extract_folder(
        [videos.video_dir],
        features,
        backbone=BACKBONE,
        weights="random",
        settings=ExtractSettings(FPS, NUM_FRAMES, STRIDE),
        progress=progress,
        report=lambda line: None,
    )
    data = yaml.safe_load(DEMO_VIDEO_CONFIG.read_text())
    data["dataset"].update(annotation_file=str(videos.annotation_path), feat_dir=str(features))
    cfg = fill_config(config_from_dict(apply_overrides(data, overrides or []), str(DEMO_VIDEO_CONFIG)), "demo")
    echo(f"[demo] features in {features} ({time.time() - start:.0f} s); training CLTDR-GMG")
    run = RunDir(out / "run")
    Trainer(cfg, run.root, resume=run.trained, progress=progress).fit()
    tested = test_run(run.root, out_dir=out, progress=False)
    echo(tested.split.metrics.format_table())

    database = read_json(videos.annotation_path, "annotation")["database"]
    localizer = Localizer.from_run(run.root, device="cpu")
    backbone = localizer.backbone()  # rebuilt from the run's feature card (the same random weights)
    subtitles, timelines = [], []
    for video_id in (v for v, entry in database.items() if entry["subset"] == videos.test_subset):
        found = localizer.detect_video(videos.video_dir / f"{video_id}.mp4", backbone=backbone)
        subtitles.append(atomic_write_text(out / "subtitles" / f"{video_id}.srt", found.above(SRT_MIN_SCORE).to_srt()))
        results = {"results": {video_id: found.to_activitynet()}}
        line = timeline({"database": database}, results, videos.test_subset, video_id, 8)
        timelines.append(plot_timeline(line, out / "timelines" / f"{video_id}.png"))
    echo(
        f"[demo] the test videos -> {out / 'subtitles'}/*.srt and {out / 'timelines'}/*.png "
        f"({time.time() - start:.0f} s)"
    )
    metrics = tested.split.metrics
    return VideoDemo(metrics.average_mAP, metrics.format_table(), subtitles, timelines, tested.written)
