"""The bad inputs of issue 13 ("a new user's first week"), one table: each case prepares its files, runs one
``cltdr`` command and expects exit status 2 with ``cltdr <command>: error: ...`` holding every fragment (so no
traceback: :func:`cltdr.cli.main` returned), and no training epoch started.

The earlier list of bad inputs (missing, malformed and inconsistent files and configs) is the parametrized tests of
test_cli.py; what needs more than a message (a warning, a fallback, a log) has its own test below the table.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from cltdr.data import synth
from test_cli import edit_json, no_epoch, run_error  # noqa: F401  (no_epoch: a fixture)


@dataclass
class Env:
    """What a case may use: the test's folder, a private copy of the tiny data, the session's trained run."""

    tmp_path: Path
    data: synth.SynthInfo
    trained_run: Path
    write_config: Callable[..., Path]

    def run_copy(self) -> Path:
        """A private copy of the trained run (2 epochs of the tiny config on the tiny data)."""
        run = self.tmp_path / "run"
        shutil.copytree(self.trained_run, run)
        return run

    def trained_config(self) -> Path:
        """The config the trained run was trained with."""
        return self.trained_run.parent / "config.yaml"


Case = Callable[[Env], tuple[list, list[str]]]  # env -> (argv, fragments of the error message)


def resume_with_more_epochs(env: Env):
    run = env.run_copy()
    argv = ["train", env.trained_config(), "--out", run, "--resume", "--set", "train.epochs=3", "train.lr=2e-3"]
    return argv, [
        f"--resume cannot change the learning-rate schedule of the run in {run}",
        f"train.epochs: the run has 1 ({run / 'config.yaml'}), the config has 3",
        "train.lr: the run has 0.001",
        "--set train.epochs=1 train.lr=0.001",
        "another --out",
    ]


def resume_with_fewer_training_videos(env: Env):
    run = env.run_copy()
    drop = [f"video_training_{i:05d}" for i in range(4)]  # 12 of 16 videos left: 3 batches of 4, not 4
    edit_json(env.data.annotation_path, lambda d: [d["database"].pop(v) for v in drop])
    cfg = yaml.safe_load(env.trained_config().read_text())
    cfg["dataset"].update(annotation_file=str(env.data.annotation_path), feat_dir=str(env.data.feat_dir))
    config = env.tmp_path / "fewer.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return ["train", config, "--out", run, "--resume"], [
        "took 8 optimiser steps in 2 epochs",
        "subset 'training' now has 12 videos, 3 batches of 4 an epoch",
        "learning-rate schedule would change",
    ]


CASES: dict[str, Case] = {
    "1: --resume with another train.epochs and lr": resume_with_more_epochs,
    "1: --resume with fewer training videos": resume_with_fewer_training_videos,
}


@pytest.mark.usefixtures("no_epoch")
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_message(case, data_copy, trained_run, write_config, tmp_path, capsys):
    argv, fragments = CASES[case](Env(tmp_path, data_copy, trained_run, write_config))
    msg = run_error(capsys, *map(str, argv))
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in:\n{msg}"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
