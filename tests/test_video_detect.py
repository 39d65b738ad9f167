"""From video files to detections: ``cltdr demo --video``'s pipeline on its tiny preset (render -> extract ->
train -> test -> subtitles and timelines), ``cltdr detect RUN VIDEO`` against detection on the extracted
features, the output formats, and the refusal of features or weights other than the run's."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from cltdr import cli
from cltdr.api import Detection, Detections
from cltdr.extract.card import CARD_NAME, read_card
from cltdr.video_demo import run_video_demo
from conftest import TINY_MODEL
from test_cli import run_error

pytest.importorskip("av")

TINY = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "model.num_levels=4",
    "train.epochs=2",
    "train.warmup_epochs=1",
    "dataset.max_seq_len=64",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("video-demo")
    return out, run_video_demo(out, preset="tiny", progress=False, echo=lambda line: None, overrides=TINY)


def detect(capsys, *argv) -> str:
    rc = cli.main(["detect", *map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_the_demo_pipeline_trains_on_extracted_features_and_writes_subtitles_and_timelines(demo):
    out, result = demo
    assert 0.0 <= result.average_mAP <= 1.0 and "mAP (%)" in result.table
    card = read_card(out / "features" / CARD_NAME)
    assert read_card(out / "run" / CARD_NAME) == card  # the run keeps its features' card
    dataset = yaml.safe_load((out / "run" / "config.yaml").read_text())["dataset"]
    assert (dataset["input_dim"], dataset["feat_stride"], dataset["num_frames"], dataset["feat_fps"]) == (
        card.dim,
        card.stride,
        card.num_frames,
        card.fps,
    )
    test_videos = sorted(p.stem for p in (out / "videos").glob("video_testing_*.mp4"))
    assert [p.stem for p in result.subtitles] == [p.stem for p in result.timelines] == test_videos
    for srt, png in zip(result.subtitles, result.timelines):
        assert png.read_bytes().startswith(b"\x89PNG")
        cues = [c for c in srt.read_text().split("\n\n") if c.strip()]
        for n, cue in enumerate(cues, 1):
            index, times, text = cue.strip().split("\n")
            assert index == str(n) and re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", times)
            assert re.fullmatch(r"\w+ \(\d\.\d\d\)", text)


def test_detect_on_a_video_equals_detect_on_its_extracted_features(demo, tmp_path, capsys):
    out, _ = demo
    video, features = out / "videos" / "video_testing_000.mp4", out / "features" / "video_testing_000.npy"
    detect(capsys, out / "run", video, "--out", tmp_path / "from_video.json")
    detect(capsys, out / "run", features, "--out", tmp_path / "from_features.json")
    a = json.loads((tmp_path / "from_video.json").read_text())["results"]["video_testing_000"]
    b = json.loads((tmp_path / "from_features.json").read_text())["results"]["video_testing_000"]
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["label"] == y["label"]
        np.testing.assert_allclose([x["score"], *x["segment"]], [y["score"], *y["segment"]], atol=1e-5)

    # the same detections as CSV rows and as SRT cues (start order)
    detect(capsys, out / "run", video, "--out", tmp_path / "d.csv", "--top", 5)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "d.csv").read_text())))
    assert [(r["label"], float(r["score"])) for r in rows] == [(e["label"], e["score"]) for e in a[:5]]
    detect(capsys, out / "run", video, "--out", tmp_path / "d.txt", "--format", "srt", "--top", 5)
    cues = [c for c in (tmp_path / "d.txt").read_text().split("\n\n") if c.strip()]
    assert len(cues) == 5
    assert [c.split("\n")[2].split(" (")[0] for c in cues] == [
        e["label"] for e in sorted(a[:5], key=lambda e: e["segment"][0])
    ]


def test_srt_cues_are_in_start_order_with_their_label_and_score():
    jump, run = Detection("jump", 0.9, 61.25, 63.5), Detection("run", 0.4, 3599.0, 3725.0015)
    found = Detections("v", (run, jump), 4000.0, 10)  # best first, as detections come
    assert found.to_srt() == (
        "1\n00:01:01,250 --> 00:01:03,500\njump (0.90)\n\n2\n00:59:59,000 --> 01:02:05,002\nrun (0.40)\n"
    )
    assert Detections("v", (), 1.0, 1).to_srt() == ""


def test_a_detector_refuses_features_whose_card_differs_from_its_run(demo, tmp_path, capsys):
    out, _ = demo
    other = tmp_path / "other"
    shutil.copytree(out / "features", other)
    card = json.loads((other / CARD_NAME).read_text())
    card.update(backbone="r3d_18", stride=4)
    (other / CARD_NAME).write_text(json.dumps(card))
    msg = run_error(capsys, "detect", out / "run", other / "video_testing_000.npy", "--out", tmp_path / "p.json")
    run_card, their_card = out / "run" / CARD_NAME, other / CARD_NAME
    assert f"backbone: {run_card} has 'tiny3d', {their_card} has 'r3d_18'" in msg
    assert f"stride: {run_card} has 2, {their_card} has 4" in msg
    assert "extract its video again" in msg


def test_a_video_is_not_extracted_with_other_weights_than_the_runs(demo, tmp_path, capsys):
    out, _ = demo
    from cltdr.extract.backbones import build_backbone

    net = build_backbone("tiny3d", "random").network
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    torch.save(net.state_dict(), tmp_path / "other.pt")
    msg = run_error(
        capsys,
        "detect",
        out / "run",
        out / "videos" / "video_testing_000.mp4",
        "--out",
        tmp_path / "p.json",
        "--backbone-weights",
        tmp_path / "other.pt",
    )
    assert f"backbone tiny3d: the weights {(tmp_path / 'other.pt').resolve()} (sha256" in msg
    assert f"are not those of {out / 'run' / CARD_NAME} (random, sha256" in msg
