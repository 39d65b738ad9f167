"""``cltdr extract``: video files -> one feature file (T, C) per video and the folder's feature card."""

from __future__ import annotations

import argparse
from pathlib import Path

from cltdr.cli.common import echo
from cltdr.errors import CltdrError
from cltdr.utils.text import counted


def cmd_extract(args) -> None:
    from cltdr.extract.extract import ExtractSettings, extract_folder
    from cltdr.runs import select_device

    settings = ExtractSettings(args.fps, args.num_frames, args.stride, args.batch_size)
    summary = extract_folder(
        args.videos,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        settings=settings,
        device=select_device(args.device),
        progress=not args.quiet,
        report=echo,
    )
    card = summary.card
    echo(
        f"{args.out}: {counted(len(summary.written), 'video')} extracted, {len(summary.skipped)} already done, "
        f"{len(summary.failed)} failed; features of {card.describe()} (card: {args.out / 'feature_card.json'})"
    )
    if summary.failed:
        for video, why in summary.failed:
            echo(f"  failed: {video}: {why}")
        names = ", ".join(str(v) for v, _ in summary.failed)
        raise CltdrError(f"{counted(len(summary.failed), 'video')} could not be extracted: {names}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cltdr.extract.extract import DEFAULT_BATCH_SIZE, DEFAULT_FPS, DEFAULT_STRIDE

    s = sub.add_parser("extract", help="video files -> clip features (T, C) per video, with a feature card")
    s.add_argument("videos", nargs="+", type=Path, help="video files, or folders of them (.mp4, .mkv, .avi, ...)")
    s.add_argument(
        "--backbone",
        required=True,
        help="r3d_18, r2plus1d_18, s3d, mvit_v2_s, swin3d_t (torchvision), "
        "videomae (a local Hugging Face directory as --weights), tiny3d (pure PyTorch, for demos)",
    )
    s.add_argument("--out", required=True, type=Path, help="feature folder: <video_id>.npy each, feature_card.json")
    s.add_argument(
        "--weights",
        default=None,
        help="'pretrained' (torchvision's, from its cache; the default there), 'random' (fixed seed; the default "
        "of tiny3d), a state-dict file, or videomae's model directory",
    )
    s.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frame rate to resample to (default: %(default)s)")
    s.add_argument(
        "--num-frames", type=int, default=None, help="frames per clip (default: the backbone's: 16, tiny3d 8)"
    )
    s.add_argument("--stride", type=int, default=DEFAULT_STRIDE, help="frames between clips (default: %(default)s)")
    s.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="clips per backbone call (default: %(default)s)"
    )
    s.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:N' or 'auto' (default: %(default)s)")
    s.add_argument("--quiet", action="store_true", help="no progress bars (one line per video instead)")
    s.set_defaults(func=cmd_extract)
