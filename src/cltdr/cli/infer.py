"""``cltdr test`` (evaluate a trained run on an annotated subset), ``cltdr detect`` (feature files without
annotations -> a prediction file, through the Python API ``cltdr.api``) and ``cltdr export-model`` (a run's
network as a TorchScript or ONNX file, ``cltdr.deploy``)."""

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

    from cltdr.api import Localizer, result_file
    from cltdr.utils.io import atomic_write_json

    localizer = Localizer.from_run(
        args.run_dir, checkpoint=args.checkpoint, device=args.device, preset=args.preset, weights=args.weights
    )
    if args.amp:
        localizer.config.test.amp = args.amp
    fps = args.fps if args.fps is not None else localizer.default_fps
    if fps is None:
        raise CltdrError("the run's config has no dataset.default_fps: pass --fps (frames per second of the videos)")
    if not fps > 0:
        raise CltdrError(f"--fps {fps:g}: the frame rate of the videos must be > 0")
    found_all = []
    many = len(args.features) > 1
    files = localizer.iter_files(
        args.features, fps=fps, feat_stride=args.feat_stride, num_frames=args.num_frames, progress=not args.quiet
    )
    for found in tqdm(
        files, total=len(args.features), desc="videos", disable=args.quiet or not many, dynamic_ncols=True
    ):
        found = found.top(args.top) if args.top is not None else found
        found_all.append(found)
        if not args.quiet:
            tqdm.write(
                f"{found.video_id}: {counted(found.num_steps, 'step')}, {found.duration:.1f} s, "
                f"{counted(len(found), 'detection')}"
            )
    atomic_write_json(args.out, result_file(found_all), indent=None)
    echo(f"wrote {args.out}")


def cmd_export_model(args) -> None:
    from cltdr.deploy import export_model

    out = export_model(args.run_dir, args.format, args.out, checkpoint=args.checkpoint, weights=args.weights)
    echo(f"wrote {out} ({args.format}; checked against the model on two lengths)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("test", "evaluate a trained run on its test subset"),
        ("detect", "detect actions in feature files that have no annotations"),
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
    detect.add_argument("features", nargs="+", type=Path, help="feature files (T, C); the video id is the file stem")
    detect.add_argument("--out", required=True, type=Path, help="prediction JSON (ActivityNet result format)")
    detect.add_argument("--fps", type=float, default=None, help="frames per second (default: dataset.default_fps)")
    detect.add_argument("--feat-stride", type=float, default=None, help="frames between features (default: config)")
    detect.add_argument("--num-frames", type=float, default=None, help="frames per feature (default: config)")
    detect.add_argument("--top", type=int, default=None, help="keep only the top N detections per video")
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
