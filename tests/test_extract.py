"""``cltdr extract``: decoding and resampling (constant and variable frame rates), the clip grid, the frames of a
clip, the feature card, resuming, and videos that cannot be read."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from cltdr import cli
from cltdr.data.grid import FeatureGrid
from cltdr.extract.backbones import build_backbone, sha256_parameters
from cltdr.extract.card import CARD_NAME, read_card
from cltdr.extract.clips import ClipBatcher, clip_frames, num_clips
from cltdr.extract.decode import Resampler, VideoReader
from test_cli import run_error
from videos import index_video, moving_video


def extract(capsys, *argv) -> str:
    """Run ``cltdr extract ... --quiet`` expecting success; its output."""
    rc = cli.main(["extract", *map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def expected_sources(times: np.ndarray, duration: float, fps: float) -> np.ndarray:
    """The slow, obvious rule: resampled frame k (k + 1 <= duration * fps) shows the last source frame whose
    timestamp is <= k / fps."""
    count = int(np.floor(duration * fps + 1e-6))
    return np.array([max(i for i, t in enumerate(times) if t <= k / fps + 1e-6) for k in range(count)])


def test_resampler_matches_the_slow_rule_for_any_chunking():
    rng = np.random.default_rng(1)
    times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.01, 0.3, 60))])  # variable gaps, some > 1 / fps
    frames = np.arange(len(times)).reshape(-1, 1, 1, 1).repeat(3, axis=-1).astype(np.int64)  # (F, 1, 1, 3)
    end = times[-1] + 0.05
    for fps in (4.0, 10.0, 30.0):  # down- and up-sampling
        resampler = Resampler(fps)
        parts = [resampler.push(float(t), f) for t, f in zip(times, frames)] + [resampler.finish(end)]
        got = np.concatenate([p for p in parts if p is not None])[:, 0, 0, 0]
        np.testing.assert_array_equal(got, expected_sources(times, end, fps))


def test_clip_batcher_cuts_the_grid_for_any_chunking():
    frames = torch.arange(23.0).view(1, 23, 1, 1)  # (C, n, h, w): frame i holds i
    for num_frames, stride, batch in ((4, 2, 3), (3, 5, 2), (1, 1, 4), (8, 3, 10)):
        for chunk in (1, 4, 23):
            batcher = ClipBatcher(num_frames, stride, batch)
            out = [b for i in range(0, 23, chunk) for b in batcher.push(frames[:, i : i + chunk])]
            out += list(batcher.finish())
            clips = torch.cat(out)[:, 0, :, 0, 0]  # (T, N)
            assert len(clips) == num_clips(23, num_frames, stride)
            for t, clip in enumerate(clips.tolist()):
                assert clip == list(clip_frames(t, num_frames, stride)), (num_frames, stride, chunk, t)
            assert all(len(b) == batch for b in out[:-1])


@pytest.mark.parametrize(
    "video_fps, size, extract_fps, codec",
    [(25.0, (32, 48), 10.0, "ffv1"), (30.0, (48, 64), 10.0, "mpeg4"), (12.0, (40, 40), 15.0, "mpeg4")],
)
def test_features_number_the_grid_formula_for_the_video_duration(tmp_path, capsys, video_fps, size, extract_fps, codec):
    seconds = 3.0
    if codec == "ffv1":
        path = index_video(tmp_path / "v.mkv", int(seconds * video_fps), video_fps, height=size[0], width=size[1])
    else:
        path = moving_video(tmp_path / "v.mp4", seconds, video_fps, *size)
    extract(capsys, path, "--backbone", "tiny3d", "--out", tmp_path / "f", "--fps", extract_fps, "--stride", 3)
    feats = np.load(tmp_path / "f" / "v.npy")
    grid = FeatureGrid(extract_fps, 3, 8)  # tiny3d's clips are 8 frames
    assert feats.shape == (grid.expected_steps(seconds), 64)
    assert np.isfinite(feats).all() and feats.std(axis=0).max() > 0


def test_a_clips_frames_are_the_right_ones(tmp_path, capsys):
    """Frames carry their index in their pixels (lossless video); the pass-through backbone reads them back."""
    count, fps = 75, 25.0
    index_video(tmp_path / "v" / "constant.mkv", count, fps)
    rng = np.random.default_rng(0)
    times = np.concatenate([[0.0], np.cumsum(rng.choice([0.02, 0.04, 0.13, 0.3], count - 1))]).round(3)
    index_video(tmp_path / "v" / "variable.mkv", count, fps, times=times)
    out = tmp_path / "f"
    argv = ["--backbone", "frame-index", "--out", out, "--fps", 10, "--num-frames", 4, "--stride", 3, "--batch-size", 3]
    extract(capsys, tmp_path / "v", *argv)
    for name, source_times in (("constant", np.arange(count) / fps), ("variable", times)):
        reader = VideoReader(tmp_path / "v" / f"{name}.mkv", 10)
        list(reader.chunks())
        assert source_times[-1] < reader.duration <= source_times[-1] + 0.3  # + the last frame's duration
        sources = expected_sources(source_times, reader.duration, 10.0)
        feats = np.load(out / f"{name}.npy")  # (T, N): the source frame index of each frame of each clip
        T = FeatureGrid(10.0, 3, 4).expected_steps(reader.duration)
        assert feats.shape == (T, 4)
        want = np.stack([sources[list(clip_frames(t, 4, 3))] for t in range(T)])
        np.testing.assert_array_equal(feats, want)


def test_the_card_says_how_the_features_were_made(tmp_path, capsys):
    moving_video(tmp_path / "v.mp4", 2.0, 15.0, 32, 32)
    extract(capsys, tmp_path / "v.mp4", "--backbone", "tiny3d", "--out", tmp_path / "f", "--fps", 12, "--stride", 2)
    card = json.loads((tmp_path / "f" / CARD_NAME).read_text())
    assert card["backbone"] == "tiny3d" and card["dim"] == 64 and card["frame_size"] == [64, 64]
    assert (card["fps"], card["num_frames"], card["stride"]) == (12.0, 8, 2)
    assert card["weights"] == {
        "kind": "random",
        "source": None,
        "sha256": sha256_parameters(build_backbone("tiny3d", "random").network),
        "seed": 0,
    }
    assert card["preprocessing"]["resize"] == [64, 64] and card["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert card["layout"] == "TC" and card["ext"] == ".npy" and card["cltdr_version"]

    # weights from a file: its path and SHA-256, and features of those weights
    net = build_backbone("tiny3d", "random").network
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(-1.0)
    weights = tmp_path / "tiny3d.pt"
    torch.save(net.state_dict(), weights)
    extract(
        capsys,
        tmp_path / "v.mp4",
        "--backbone",
        "tiny3d",
        "--weights",
        weights,
        "--out",
        tmp_path / "g",
        "--fps",
        12,
        "--stride",
        2,
    )
    card = read_card(tmp_path / "g" / CARD_NAME)
    assert card.weights.kind == "file" and card.weights.source == str(weights.resolve())
    assert card.weights.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert not np.allclose(np.load(tmp_path / "f" / "v.npy"), np.load(tmp_path / "g" / "v.npy"))


def test_a_restarted_extraction_skips_finished_videos_but_not_a_partial_file(tmp_path, capsys):
    for i in range(3):
        moving_video(tmp_path / "v" / f"clip{i}.mp4", 1.5, 10.0, 32, 32, seed=i)
    out = tmp_path / "f"
    argv = ["--backbone", "tiny3d", "--out", out, "--fps", 10, "--stride", 2]
    extract(capsys, tmp_path / "v" / "clip0.mp4", *argv)  # a first run that finished one video ...
    done = np.load(out / "clip0.npy")
    np.save(out / "clip0.npy", done + 1000.0)  # (marked, to see that it is not redone)
    partial = out / ".clip1.npy.a1b2c3.tmp"  # ... and was killed while writing the next one
    partial.write_bytes(b"\x93NUMPY torn")
    text = extract(capsys, tmp_path / "v", *argv)
    assert "2 videos extracted, 1 already done, 0 failed" in text
    np.testing.assert_array_equal(np.load(out / "clip0.npy"), done + 1000.0)
    assert not partial.exists()
    assert np.load(out / "clip1.npy").shape == np.load(out / "clip2.npy").shape == done.shape


def test_extracting_with_other_settings_into_a_folder_is_refused(tmp_path, capsys):
    moving_video(tmp_path / "v.mp4", 1.5, 10.0, 32, 32)
    out = tmp_path / "f"
    extract(capsys, tmp_path / "v.mp4", "--backbone", "tiny3d", "--out", out, "--stride", 2)
    msg = run_error(
        capsys, "extract", tmp_path / "v.mp4", "--backbone", "tiny3d", "--out", out, "--stride", 4, "--quiet"
    )
    assert f"stride: {out / CARD_NAME} has 2, this extraction has 4" in msg
    assert "extract into another --out" in msg


def test_a_truncated_or_corrupt_video_is_named_and_the_others_go_on(tmp_path, capsys):
    folder = tmp_path / "v"
    moving_video(folder / "good_a.mp4", 1.5, 10.0, 32, 32)
    moving_video(folder / "good_b.mp4", 1.5, 10.0, 32, 32)
    whole = moving_video(tmp_path / "whole.mp4", 3.0, 10.0, 32, 32).read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    rc = cli.main(["extract", str(folder), "--backbone", "tiny3d", "--out", str(tmp_path / "f"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "2 videos extracted, 0 already done, 2 failed" in out
    for bad in ("truncated.mp4", "noise.mkv"):
        assert f"failed: {folder / bad}: video {folder / bad}" in out
    assert err.startswith("cltdr extract: error: 2 videos could not be extracted: ") and "Traceback" not in err
    assert str(folder / "truncated.mp4") in err and str(folder / "noise.mkv") in err
    assert sorted(p.name for p in (tmp_path / "f").glob("*.npy")) == ["good_a.npy", "good_b.npy"]
