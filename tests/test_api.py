"""The Python API (``cltdr.Localizer``): the same detections as ``cltdr detect``, typed results and their
formats, several localizers in one process, threads sharing one, and clear errors."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import cltdr
from cltdr import Detection, Detections, Localizer, cli
from cltdr.errors import CltdrError
from cltdr.inference.runner import detect_file


@pytest.fixture(scope="module")
def localizer(trained_run) -> Localizer:
    return Localizer.from_run(trained_run, device="cpu")


def test_calls_agree_with_cltdr_detect(localizer, trained_run, tiny_data, tmp_path, capsys):
    files = [tiny_data.feat_dir / f"video_testing_0000{i}.npy" for i in (0, 3)]
    argv = ["detect", str(trained_run), *map(str, files), "--out", str(tmp_path / "p.json"), "--fps", "30", "--quiet"]
    assert cli.main(argv) == 0
    written = json.loads((tmp_path / "p.json").read_text())
    found = localizer.detect_files(files, fps=30)
    assert list(found) == [f.stem for f in files]
    assert cltdr.api.result_file(found.values()) == written
    array = np.load(files[0])
    from_array = localizer(array, fps=30, video_id=files[0].stem)
    assert from_array == found[files[0].stem]  # frozen dataclasses: equal field by field
    assert localizer(torch.from_numpy(array), fps=30, video_id=files[0].stem) == from_array
    cfg, model, device = localizer.config, localizer.model, localizer.device
    assert from_array.to_activitynet() == detect_file(cfg, model, device, files[0], fps=30).results


def test_detections_are_typed_and_convert(localizer, tiny_data):
    found = localizer(np.load(tiny_data.feat_dir / "video_testing_00001.npy"), fps=30, video_id="v1")
    assert isinstance(found, Detections) and len(found) > 3 and all(isinstance(d, Detection) for d in found)
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= d.start < d.end <= found.duration and d.label in localizer.class_names for d in found)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].score = 1.0  # type: ignore[misc]
    entries = found.to_activitynet()
    assert entries[0] == {"label": found[0].label, "score": found[0].score, "segment": [found[0].start, found[0].end]}
    rows = list(csv.reader(io.StringIO(found.top(3).to_csv())))
    assert rows[0] == ["video", "start", "end", "label", "score"] and len(rows) == 4
    assert rows[1][0] == "v1" and float(rows[1][4]) == found[0].score
    assert len(found.above(found[2].score)) >= 3 and all(d.score >= found[2].score for d in found.above(0.5))
    clipped = localizer(np.load(tiny_data.feat_dir / "video_testing_00001.npy"), fps=30, duration=5.0)
    assert clipped.duration == 5.0 and all(d.end <= 5.0 for d in clipped)


def test_several_localizers_keep_their_own_settings(trained_run, localizer, tiny_data):
    feats = np.load(tiny_data.feat_dir / "video_testing_00004.npy")
    deployment = Localizer.from_run(trained_run, checkpoint="last", device="cpu", preset="deployment")
    few, many = deployment(feats, fps=30), localizer(feats, fps=30)
    assert len(few) <= 100 < len(many)  # deployment: at most 100 per video
    assert localizer(feats, fps=30) == many  # the other localizer changed nothing in this one
    assert localizer.config.test.preset == "benchmark" and deployment.config.test.preset == "deployment"


def test_threads_share_one_localizer(localizer, tiny_data):
    arrays = [np.load(tiny_data.feat_dir / f"video_testing_0000{i}.npy") for i in range(4)]
    serial = [localizer(a, fps=30) for a in arrays]
    results: dict[int, Detections] = {}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(len(arrays)):
                k = (i + offset) % len(arrays)
                results[k] = localizer(arrays[k], fps=30)
                assert results[k] == serial[k]
        except BaseException as e:  # reported below, from the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in (0, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [results[k] for k in range(len(arrays))] == serial
    assert torch.is_grad_enabled()  # no global switch left behind


def test_bad_input_says_what_was_expected(localizer, trained_run, tiny_data, tmp_path):
    feats = np.load(tiny_data.feat_dir / "video_testing_00000.npy")
    with pytest.raises(CltdrError, match=rf"expected \(T, {feats.shape[1]}\), got \(T, 3\)"):
        localizer(feats[:, :3], fps=30)
    with pytest.raises(CltdrError, match=r"expected a \(T, 32\) array, got shape \(4,\)"):
        localizer(np.zeros(4), fps=30)
    with pytest.raises(CltdrError, match=r"fps=0: the frame rate of the video must be > 0"):
        localizer(feats, fps=0)
    with pytest.raises(CltdrError, match=r"no dataset.default_fps: pass fps="):
        localizer(feats)
    with pytest.raises(CltdrError, match="needs at least 8 steps"):
        localizer(feats[:5], fps=30)
    with pytest.raises(CltdrError, match="unknown post-processing preset 'fast'"):
        Localizer.from_run(trained_run, device="cpu", preset="fast")
    with pytest.raises(CltdrError, match="not a cltdr run directory"):
        Localizer.from_run(tmp_path)
    twin = tmp_path / "video_testing_00000.npy"
    np.save(twin, feats)
    with pytest.raises(CltdrError, match="same stem 'video_testing_00000'"):
        localizer.detect_files([tiny_data.feat_dir / twin.name, twin], fps=30)


def test_the_version_is_stated_once_and_in_the_changelog():
    assert re.fullmatch(r"\d+\.\d+\.\d+", cltdr.__version__)
    root = Path(__file__).resolve().parents[1]
    assert '\nversion = "' not in (root / "pyproject.toml").read_text()  # read from cltdr.__version__
    assert f"## {cltdr.__version__}" in (root / "CHANGELOG.md").read_text()
