"""What the command modules share: printing, and the options of every command that loads a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path


def echo(msg: str = "") -> None:
    print(msg, flush=True)


def add_run_options(s: argparse.ArgumentParser, *, weights: bool = True) -> None:
    """RUN_DIR and how to load its model: the checkpoint, the device and (``weights``) EMA or raw weights."""
    s.add_argument("run_dir", type=Path, help="a run directory written by `cltdr train` (or import-checkpoint)")
    s.add_argument("--checkpoint", default=None, help="'last', 'best' or a path (default: best if kept, else last)")
    s.add_argument(
        "--device", default="auto", help="'auto' (the run's train.device), 'cpu', 'cuda' or 'cuda:N' (default: auto)"
    )
    if weights:
        s.add_argument(
            "--weights",
            choices=("ema", "raw"),
            default="ema",
            help="the EMA weights (default, when the run kept an EMA) or the optimiser's raw weights",
        )
