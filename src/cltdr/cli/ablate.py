"""The ``cltdr ablate`` command: train and test every variant of an ablation spec, write a Markdown table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cltdr.cli.common import echo


def cmd_ablate(args) -> None:
    from cltdr.ablate import run_ablation

    try:
        table = run_ablation(
            args.spec,
            args.out,
            overrides=args.set,
            only=args.only,
            progress=not args.quiet,
            seeds=args.seeds,
            echo=echo,
        )
    except KeyboardInterrupt:
        print(
            f"cltdr ablate: run `cltdr ablate {args.spec} --out {args.out}` again to continue: finished variants "
            "are skipped and a half-trained one resumes from its last checkpoint",
            file=sys.stderr,
        )
        raise
    echo(table.read_text())
    echo(f"wrote {table}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("ablate", help="train and test every variant of an ablation spec; write a Markdown table")
    s.add_argument("spec", type=Path, help="ablation spec (YAML: base config + named overrides), e.g. ablations/*.yaml")
    s.add_argument("--out", required=True, type=Path, help="output folder: runs/<variant>/ and table.md")
    s.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys of every variant, after the spec's own (e.g. train.device=cuda)",
    )
    s.add_argument("--only", nargs="+", default=None, metavar="VARIANT", help="run only these variants")
    s.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="train N seeds of every variant (train.seed, +1, ...); the table shows mean ± std "
        "(default: the spec's seeds, else 1)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_ablate)
