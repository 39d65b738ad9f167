"""``cltdr test`` (evaluate a trained run on an annotated subset), ``cltdr detect`` (feature files or videos
without annotations -> detections in JSON, CSV or SRT, through the Python API ``cltdr.api``) and
``cltdr export-model`` (a run's network as a TorchScript or ONNX file, ``cltdr.deploy``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cltdr.cli.common import add_run_options, echo
from cltdr.errors import CltdrError
from cltdr.utils.text import counted


def cmd_test(args) -> None:
    from cltdr.inference.runner import test_run

    tested = test_run(
        args.run_dir,
        subset=args.subset,
        out_dir=args.out,
        checkpoint=args.checkpoint,
        device=args.device,
        weights=args.weights,
        preset=args.preset,
        progress=not args.quiet,
        amp=args.amp,
    )
    if not tested.written:  # torchrun: a process other than the first, which reports
        return
    split = tested.split
    echo(f"subset '{tested.subset}': {len(split.results)} videos")
    echo(split.metrics.format_table())
    if split.fused is not None:  # dataset.fusion: the same detections fused with external class scores
        echo(
            f"with external class scores ({tested.cfg.dataset.fusion.score_file}):\n"
            f"{split.fused.metrics.format_table()}"
        )
    echo("wrote " + " and ".join(map(str, tested.written)))


def cmd_detect(args) -> None:
    from tqdm import tqdm

    from cltdr.api import Localizer, check_video_ids
    from cltdr.extract.decode import is_video

    localizer = Localizer.from_run(
        args.run_dir, checkpoint=args.checkpoint, device=args.device, preset=args.preset, weights=args.weights
    )
    if args.amp:
        localizer.config.test.amp = args.amp
    videos = [p for p in args.inputs if is_video(p)]
    fmt = output_format(args.format, args.out, len(args.inputs))
    grid = {"--fps": args.fps, "--feat-stride": args.feat_stride, "--num-frames": args.num_frames}
    given = [k for k, v in grid.items() if v is not None]
    if videos and given:
        raise CltdrError(
            f"{' and '.join(given)} describe feature files; a video ({videos[0]}) is extracted as the run's feature "
            f"card ({localizer.card_file}) says: pass videos and feature files separately"
        )
    fps = args.fps if args.fps is not None else localizer.default_fps
    if len(videos) < len(args.inputs):  # feature files: their grid
        if fps is None:
            raise CltdrError(
                "the run's config has no dataset.default_fps: pass --fps (frames per second of the videos)"
            )
        if not fps > 0:
            raise CltdrError(f"--fps {fps:g}: the frame rate of the videos must be > 0")
    check_video_ids(args.inputs)  # before any detection
    backbone = localizer.backbone(args.backbone_weights) if videos else None  # built once for all videos
    progress = not args.quiet

    def detect(path: Path):
        if is_video(path):
            return localizer.detect_video(path, backbone=backbone, batch_size=args.batch_size, progress=progress)
        return localizer.detect_file(
            path, fps=fps, feat_stride=args.feat_stride, num_frames=args.num_frames, progress=progress
        )

    found_all = []
    many = len(args.inputs) > 1
    for path in tqdm(args.inputs, desc="videos", disable=args.quiet or not many, dynamic_ncols=True):
        found = detect(path)
        found = found.above(args.min_score) if args.min_score is not None else found
        found = found.top(args.top) if args.top is not None else found
        found_all.append(found)
        if not args.quiet:
            tqdm.write(
                f"{found.video_id}: {counted(found.num_steps, 'step')}, {found.duration:.1f} s, "
                f"{counted(len(found), 'detection')}"
            )
    for written in write_detections(found_all, fmt, args.out):
        echo(f"wrote {written}")


FORMATS = ("json", "csv", "srt")


def output_format(fmt: str | None, out: Path, inputs: int) -> str:
    """``--format``, else the ending of ``--out`` (.csv, .srt), else json; SRT of several videos is a folder."""
    fmt = fmt or {".csv": "csv", ".srt": "srt"}.get(out.suffix.lower(), "json")
    if fmt == "srt" and inputs > 1 and out.suffix.lower() == ".srt":
        raise CltdrError(f"--out {out}: SRT subtitles of {inputs} videos go into a folder (one <video_id>.srt each)")
    return fmt


def write_detections(found: list, fmt: str, out: Path) -> list[Path]:
    """Write the detections of every video: one ActivityNet JSON or CSV file, or one SRT file per video (``out`` a
    folder when there are several)."""
    from cltdr.api import result_file
    from cltdr.evaluation.export import predictions_csv
    from cltdr.utils.io import atomic_write_json, atomic_write_text

    if fmt == "json":
        return [atomic_write_json(out, result_file(found), indent=None)]
    if fmt == "csv":
        return [atomic_write_text(out, predictions_csv(result_file(found), source="detections"))]
    if len(found) == 1:
        return [atomic_write_text(out, found[0].to_srt())]
    return [atomic_write_text(out / f"{f.video_id}.srt", f.to_srt()) for f in found]


def cmd_export_model(args) -> None:
    from cltdr.deploy import export_model

    out = export_model(args.run_dir, args.format, args.out, checkpoint=args.checkpoint, weights=args.weights)
    echo(f"wrote {out} ({args.format}; checked against the model on two lengths)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("test", "evaluate a trained run on its test subset"),
        ("detect", "detect actions in feature files or videos that have no annotations"),
    ):
        s = sub.add_parser(name, help=helptext)
        add_run_options(s)
        s.add_argument("--quiet", action="store_true", help="no progress bar and no per-video lines")
        s.add_argument(
            "--preset",
            choices=("benchmark", "deployment"),
            default=None,
            help="post-processing preset, replacing test.preset (keys the config sets still override)",
        )
        s.add_argument(
            "--amp",
            choices=("none", "bf16", "fp16"),
            default=None,
            help="mixed precision of the network, replacing test.amp (default: the run's, fp32 unless set)",
        )
    test, detect = sub.choices["test"], sub.choices["detect"]
    test.add_argument("--out", type=Path, default=None, help="output folder (default: the run directory)")
    test.add_argument("--subset", default=None, help="subset to evaluate (default: dataset.test_subset)")
    test.set_defaults(func=cmd_test)
    detect.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        help="feature files (T, C), or video files (.mp4, .mkv, ...: extracted as the run's feature card says); "
        "the video id is the file stem",
    )
    detect.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the output: one JSON (ActivityNet result format) or CSV file, an .srt file (one video) or a folder "
        "of <video_id>.srt (several)",
    )
    detect.add_argument(
        "--format", choices=FORMATS, default=None, help="json, csv or srt (default: from --out's ending, else json)"
    )
    detect.add_argument("--fps", type=float, default=None, help="frames per second (default: dataset.default_fps)")
    detect.add_argument("--feat-stride", type=float, default=None, help="frames between features (default: config)")
    detect.add_argument("--num-frames", type=float, default=None, help="frames per feature (default: config)")
    detect.add_argument("--top", type=int, default=None, help="keep only the top N detections per video")
    detect.add_argument("--min-score", type=float, default=None, help="keep only detections scored at least this")
    detect.add_argument(
        "--backbone-weights",
        default=None,
        help="videos: the backbone's weights file or directory, if it moved since extraction (checked by SHA-256)",
    )
    detect.add_argument("--batch-size", type=int, default=16, help="videos: clips per backbone call (default: 16)")
    detect.set_defaults(func=cmd_detect)
    export = sub.add_parser(
        "export-model", help="write a run's network (up to its pre-NMS scores and segments) as TorchScript or ONNX"
    )
    export.add_argument("run_dir", type=Path, help="trained run directory (from cltdr train)")
    export.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="the file's format")
    export.add_argument("--out", required=True, type=Path, help="the file to write")
    export.add_argument(
        "--checkpoint", default=None, help="'last', 'best' or a path (default: best if kept, else last)"
    )
    export.add_argument("--weights", choices=("ema", "raw"), default="ema", help="the EMA (default) or raw weights")
    export.set_defaults(func=cmd_export_model)
