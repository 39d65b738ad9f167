"""Shared fixtures: the tiny synthetic dataset, configs for a tiny model on it, and one trained tiny run."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
import yaml

from cltdr import cli
from cltdr.data import synth

# A model small enough to train two epochs (one of warm-up, one of cosine decay) of the tiny preset in about a
# second on a CPU.
TINY_MODEL = {"embed_dim": 16, "head_dim": 16, "ffn_dim": 32, "num_levels": 4, "num_bins": 4}
TINY_TRAIN = {
    "epochs": 1,
    "warmup_epochs": 1,
    "lr": 1e-3,
    "batch_size": 4,
    "ema_decay": 0.99,
    "log_every": 1,
    "device": "cpu",
}


def config_dict(info: synth.SynthInfo, **sections: dict) -> dict:
    """A config for ``info``'s data and the tiny model; each keyword updates (or adds) that section."""
    data = {
        "dataset": {
            "annotation_file": str(info.annotation_path),
            "feat_dir": str(info.feat_dir),
            "train_subset": info.train_subset,
            "test_subset": info.test_subset,
            "input_dim": info.input_dim,
            "feat_stride": info.feat_stride,
            "num_frames": info.num_frames,
            "max_seq_len": 128,
        },
        "model": dict(TINY_MODEL),
        "train": dict(TINY_TRAIN),
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], ModuleType]:
    """``bench_script(name)``: bench/<name>.py imported as a module (the bench scripts are not a package)."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that sets torch's thread count for itself leaves it as it found it: runs compared bit for bit
    (resume tests against a session-scoped run) must use the same kernels."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> synth.SynthInfo:
    """The tiny synthetic preset (16 training, 8 test videos, 32 channels). Read-only: copy it to change it."""
    return synth.generate(tmp_path_factory.mktemp("tiny-data"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_iterations(tiny_data) -> int:
    """Training iterations per epoch of the tiny config on the tiny dataset."""
    database = json.loads(tiny_data.annotation_path.read_text())["database"]
    videos = sum(entry["subset"] == tiny_data.train_subset for entry in database.values())
    return math.ceil(videos / TINY_TRAIN["batch_size"])


@pytest.fixture
def data_copy(tiny_data, tmp_path) -> synth.SynthInfo:
    """A private copy of the tiny dataset that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data.root, root)
    return dataclasses.replace(
        tiny_data,
        root=root,
        annotation_path=root / "annotations.json",
        feat_dir=root / "features",
        meta_path=root / "synth_meta.json",
    )


@pytest.fixture
def write_config(tmp_path) -> Callable[..., Path]:
    """``write_config(info, **sections)``: write :func:`config_dict` as YAML into the test's folder."""

    def write(info: synth.SynthInfo, name: str = "config.yaml", **sections: dict) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config_dict(info, **sections), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory) -> Path:
    """A 2-epoch run of the tiny model trained with ``cltdr train``. Read-only: copy it to change it."""
    root = tmp_path_factory.mktemp("trained")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(tiny_data), sort_keys=False))
    run_dir = root / "run"
    assert cli.main(["train", str(config), "--out", str(run_dir), "--quiet"]) == 0
    return run_dir
