"""``cltdr import-checkpoint`` (a checkpoint of the authors' released code -> a run directory)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cltdr.cli.common import echo


def cmd_import_checkpoint(args) -> None:
    from cltdr.config import load_config
    from cltdr.runs import import_released_run

    cfg = load_config(args.config, args.set)
    run = import_released_run(args.checkpoint, cfg, args.out)
    echo(f"wrote {run.config} and {run.last}")
    echo(f"evaluate it with `cltdr test {run.root}`")


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "import-checkpoint",
        help="turn a checkpoint of the authors' released CLTDR-GMG code into a run directory",
        description="Map every tensor of a released .pth.tar (its EMA weights, 'state_dict_ema') onto "
        "model.variant 'released' and write a run directory that `cltdr test`, `detect` and `diagnose` read.",
    )
    s.add_argument("checkpoint", type=Path, help="their .pth.tar")
    s.add_argument("--config", required=True, type=Path, help="the matching config (configs/released/*.yaml)")
    s.add_argument("--out", required=True, type=Path, help="the run directory to write")
    s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    s.set_defaults(func=cmd_import_checkpoint)
