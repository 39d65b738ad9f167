"""The dataset commands of ``cltdr``: ``convert`` (official annotation formats -> the project's JSON) and
``check`` (validate a config's dataset and suggest settings)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cltdr.cli.common import echo
from cltdr.errors import CltdrError


def cmd_convert(args) -> None:
    from cltdr.data.convert import ConvertOptions, convert

    opts = ConvertOptions(
        fps=args.fps, video_info=args.video_info, classes=args.classes or (), task=args.task, margin_s=args.margin
    )
    conversion = convert(args.format, args.inputs, opts)
    conversion.write(args.out)
    echo(conversion.summary())
    echo(f"wrote {args.out}")


def cmd_check(args) -> None:
    from cltdr.config import load_config
    from cltdr.data.build import check_data_paths, relative_note
    from cltdr.data.check import check_dataset, format_report
    from cltdr.utils.io import atomic_write_json
    from cltdr.utils.text import counted

    cfg = load_config(args.config, args.set)
    check_data_paths(cfg, args.config)  # a missing folder once, not once per video
    report = check_dataset(cfg)
    echo(format_report(report, cfg, max_problems=args.max_problems))
    if args.json:
        atomic_write_json(args.json, report.to_json())
        echo(f"wrote {args.json}")
    errors = report.errors
    if errors:
        kinds = sorted({p.kind for p in errors})
        relative = relative_note(cfg)
        raise CltdrError(
            f"{args.config}: the dataset cannot be trained on as configured: {counted(len(errors), 'error')} "
            f"({', '.join(kinds)}); the first: {errors[0].message}" + (f"\n({relative})" if relative else "")
        )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``convert`` and ``check`` to the ``cltdr`` sub-command parser."""
    from cltdr.data.convert import CONVERTERS, DEFAULT_MARGIN_S, EPIC_TASKS

    s = sub.add_parser(
        "convert",
        help="convert official annotations (ActivityNet, HACS, EPIC-Kitchens-100, "
        "MultiTHUMOS) to the project's annotation JSON",
    )
    s.add_argument("format", choices=sorted(CONVERTERS), help="the format of the official annotations")
    s.add_argument(
        "inputs",
        nargs="+",
        help="activitynet / hacs: the JSON file; epic-kitchens: the CSVs, each "
        "PATH (subset from its name) or SUBSET=PATH; multithumos: the folder of <class>.txt files",
    )
    s.add_argument("--out", required=True, type=Path, help="annotation JSON to write")
    s.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate written for every video: the rate the features were extracted at",
    )
    s.add_argument(
        "--video-info",
        type=Path,
        default=None,
        help="durations (and fps, subset): a CSV with columns video_id,duration[,fps][,subset] "
        "(e.g. EPIC_100_video_info.csv) or an annotation JSON (e.g. thumos14.json)",
    )
    s.add_argument(
        "--classes",
        type=Path,
        nargs="+",
        default=None,
        help="class order: activitynet/hacs a name per line; multithumos class_list.txt; "
        "epic-kitchens EPIC_100_verb_classes.csv and/or EPIC_100_noun_classes.csv",
    )
    s.add_argument("--task", choices=EPIC_TASKS, default="verb", help="epic-kitchens: the label of an action")
    s.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN_S,
        help="seconds after the last action of a video without known duration",
    )
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("check", help="validate the dataset a config names and suggest max_seq_len and levels")
    s.add_argument("config", type=Path, help="YAML config whose dataset section is checked (e.g. configs/*.yaml)")
    s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    s.add_argument("--json", type=Path, default=None, help="also write the full report (every problem) here")
    s.add_argument("--max-problems", type=int, default=10, help="problems listed per subset (default 10)")
    s.set_defaults(func=cmd_check)
