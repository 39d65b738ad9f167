"""``cltdr test`` (evaluate a trained run on an annotated subset) and ``cltdr detect`` (feature files without
annotations -> a prediction file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cltdr.cli.common import add_run_options, echo
from cltdr.errors import CltdrError


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
    )
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

    from cltdr.evaluation import result_file
    from cltdr.inference.runner import detect_file
    from cltdr.runs import load_trained_model
    from cltdr.utils.io import atomic_write_json

    cfg, model, device = load_trained_model(args.run_dir, args.checkpoint, args.device, args.weights)
    if args.preset:
        cfg.test.preset = args.preset
    fps = args.fps if args.fps is not None else cfg.dataset.feat_fps or cfg.dataset.default_fps
    if fps is None:
        raise CltdrError("the run's config has no dataset.default_fps: pass --fps (frames per second of the videos)")
    if not fps > 0:
        raise CltdrError(f"--fps {fps:g}: the frame rate of the videos must be > 0")
    stems: dict[str, Path] = {}
    for path in args.features:
        if path.stem in stems:
            raise CltdrError(
                f"{stems[path.stem]} and {path} have the same stem {path.stem!r}, the video id of the "
                "prediction file: rename one (or run them separately)"
            )
        stems[path.stem] = path
    results = {}
    many = len(args.features) > 1
    for path in tqdm(args.features, desc="videos", disable=args.quiet or not many, dynamic_ncols=True):
        found = detect_file(
            cfg,
            model,
            device,
            path,
            fps=fps,
            feat_stride=args.feat_stride,
            num_frames=args.num_frames,
            top=args.top,
            progress=not args.quiet,
        )
        results[found.video_id] = found.results
        if not args.quiet:
            tqdm.write(
                f"{found.video_id}: {found.steps} steps, {found.duration:.1f} s, {len(found.results)} detections"
            )
    atomic_write_json(args.out, result_file(results), indent=None)
    echo(f"wrote {args.out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("test", "evaluate a trained run on its test subset"),
        ("detect", "detect actions in feature files that have no annotations"),
    ):
        s = sub.add_parser(name, help=helptext)
        add_run_options(s)
        s.add_argument("--quiet", action="store_true")
        s.add_argument(
            "--preset",
            choices=("benchmark", "deployment"),
            default=None,
            help="post-processing preset, replacing test.preset (keys the config sets still override)",
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
