"""The ``cltdr`` command: happy paths on the tiny synthetic data, and every user error as one clear message.

Each bad input must end in exit status 2 with ``cltdr <command>: error: ...`` naming the file, video or key and
what was expected, and ``cltdr train`` must stop before its first epoch. The validators themselves are unit-tested
in test_annotations.py, test_dataset.py, test_config_training.py and test_map.py; here we check that the commands
reach them in time and report them cleanly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cltdr import cli
from cltdr.training.trainer import Trainer

VICTIM = "video_training_00007"  # a training video in the middle of the file (not in the first batch)


def run_ok(capsys, *argv) -> str:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def run_error(capsys, command: str, *argv) -> str:
    """Run ``cltdr command argv...`` expecting exit status 2; the error message (without the prefix)."""
    rc = cli.main([command, *map(str, argv)])
    _, err = capsys.readouterr()
    assert rc == 2, err
    prefix = f"cltdr {command}: error: "
    assert err.startswith(prefix), err
    return err[len(prefix) :]


@pytest.fixture
def no_epoch(monkeypatch):
    """Make any training epoch fail the test: bad inputs must be caught before the first one."""

    def epoch(self, logger):
        pytest.fail("a training epoch started although the input was bad")

    monkeypatch.setattr(Trainer, "train_epoch", epoch)


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------- happy paths
def test_synth_writes_the_dataset(tmp_path, capsys):
    out = run_ok(capsys, "synth", tmp_path / "d", "--preset", "tiny", "--seed", "3")
    database = json.loads((tmp_path / "d" / "annotations.json").read_text())["database"]
    assert len(database) == 24 and (tmp_path / "d" / "synth_meta.json").is_file()
    assert sorted(p.stem for p in (tmp_path / "d" / "features").glob("*.npy")) == sorted(database)
    assert "annotations.json" in out and '"input_dim": 32' in out


def test_train_writes_config_checkpoint_and_logs(trained_run, tiny_data, tiny_iterations):
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert cfg["model"]["embed_dim"] == 16 and cfg["dataset"]["class_names"] == tiny_data.class_names
    assert Path(cfg["dataset"]["annotation_file"]).is_absolute()  # resolved, so the run works from anywhere
    assert (trained_run / "checkpoints" / "last.pt").is_file()
    assert not (trained_run / "checkpoints" / "best.pt").exists()  # no val_subset: nothing to select on
    records = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    epochs = [r for r in records if "epoch_loss" in r]
    assert [r["step"] for r in steps] == list(range(2 * tiny_iterations))  # log_every 1, two epochs
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert list((trained_run / "tb").glob("events.out.tfevents.*"))


def check_result_entries(results: dict, durations: dict, class_names: list[str]) -> None:
    assert results and set(results) == set(durations)
    for video, entries in results.items():
        assert entries, video
        assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)
        for e in entries:
            start, end = e["segment"]
            assert e["label"] in class_names
            assert 0.0 <= e["score"] <= 1.0
            assert 0.0 <= start < end <= durations[video] + 1e-6, (video, e)


def test_test_writes_predictions_and_metrics(trained_run, tiny_data, tmp_path, capsys):
    out = run_ok(capsys, "test", trained_run, "--out", tmp_path, "--quiet")
    assert "mAP" in out
    database = json.loads(tiny_data.annotation_path.read_text())["database"]
    durations = {v: e["duration"] for v, e in database.items() if e["subset"] == tiny_data.test_subset}
    pred = json.loads((tmp_path / "predictions.json").read_text())
    check_result_entries(pred["results"], durations, tiny_data.class_names)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["mAP"]) == ["0.30", "0.40", "0.50", "0.60", "0.70"]
    assert metrics["average_mAP"] == pytest.approx(np.mean(list(metrics["mAP"].values())), abs=1e-12)
    assert all(0.0 <= v <= 1.0 for v in metrics["mAP"].values())


def test_evaluate_reproduces_test_metrics(trained_run, tiny_data, tmp_path, capsys):
    run_ok(capsys, "test", trained_run, "--out", tmp_path, "--quiet")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    out = run_ok(
        capsys,
        "evaluate",
        "--gt",
        tiny_data.annotation_path,
        "--pred",
        tmp_path / "predictions.json",
        "--subset",
        tiny_data.test_subset,
        "--tiou",
        "0.3",
        "0.5",
        "--json",
        tmp_path / "e.json",
    )
    again = json.loads((tmp_path / "e.json").read_text())
    assert list(again["mAP"]) == ["0.30", "0.50"] and "0.30" in out
    for key in ("0.30", "0.50"):
        assert again["mAP"][key] == pytest.approx(metrics["mAP"][key], abs=1e-12)


def test_detect_writes_one_entry_list_per_file(trained_run, tiny_data, tmp_path, capsys):
    files = [tiny_data.feat_dir / "video_testing_00001.npy", tiny_data.feat_dir / "video_testing_00004.npy"]
    out = run_ok(capsys, "detect", trained_run, *files, "--out", tmp_path / "pred.json", "--fps", "30", "--top", "50")
    pred = json.loads((tmp_path / "pred.json").read_text())
    # Without annotations the duration is where the last feature's window ends: ((T - 1) * 4 + 16) / 30 s.
    durations = {f.stem: ((np.load(f).shape[0] - 1) * 4 + 16) / 30 for f in files}
    check_result_entries(pred["results"], durations, tiny_data.class_names)
    assert all(len(entries) <= 50 for entries in pred["results"].values())
    assert "video_testing_00001" in out


def test_detect_refuses_bad_fps_and_clashing_video_ids(trained_run, tiny_data, tmp_path, capsys):
    """Issue 13, item 3: each of these used to give a silent wrong answer or the wrong message."""
    feats = tiny_data.feat_dir / "video_testing_00001.npy"
    for fps in ("-5", "0"):
        msg = run_error(capsys, "detect", trained_run, feats, "--out", tmp_path / "p.json", "--fps", fps)
        assert f"--fps {fps}" in msg and "> 0" in msg
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / feats.name
    twin.write_bytes(feats.read_bytes())
    msg = run_error(capsys, "detect", trained_run, feats, twin, "--out", tmp_path / "p.json", "--fps", "30")
    assert "same stem 'video_testing_00001'" in msg and str(twin) in msg
    assert not (tmp_path / "p.json").exists()
    out = run_ok(capsys, "detect", trained_run, feats, "--out", tmp_path / "p.json", "--fps", "30", "--quiet")
    assert "video_testing_00001" not in out  # --quiet: no per-video lines (item 15)


def test_a_truncated_npy_says_so(tmp_path):
    from cltdr.data.features import FeatureError, load_features

    np.save(tmp_path / "full.npy", np.zeros((100, 4), dtype=np.float32))
    (tmp_path / "v.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:300])
    with pytest.raises(FeatureError, match=r"v\.npy could not be read: corrupt or truncated.*100 x 4"):
        load_features(tmp_path / "v.npy", video_id="v", input_dim=4)


def test_detect_prepares_features_as_the_run_does(trained_run, tiny_data, tmp_path, capsys):
    """A run whose config resizes features (ActivityNet style) detects on resized input with the resized grid."""
    import shutil

    import yaml

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["dataset"]["resize_to"] = 64
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    f = tiny_data.feat_dir / "video_testing_00001.npy"
    run_ok(capsys, "detect", run, f, "--out", tmp_path / "pred.json", "--fps", "30")
    pred = json.loads((tmp_path / "pred.json").read_text())
    duration = ((np.load(f).shape[0] - 1) * 4 + 16) / 30  # the stored features' span, whatever the resize
    check_result_entries(pred["results"], {f.stem: duration}, tiny_data.class_names)
    assert pred["results"][f.stem], "no detections"


# ------------------------------------------------------------------------------------- bad data: training
@pytest.mark.parametrize(
    "damage, fragments",
    [
        ("missing", ["not found", "features"]),
        ("channels", ["expected (T, 32), got (T, 31)"]),
        ("nan", ["NaN or inf", "step 5, channel 3"]),
        ("inf", ["NaN or inf", "step 5, channel 3"]),
        ("short", ["has 5 steps", "4-level pyramid", "at least 8 steps"]),
    ],
)
def test_train_rejects_bad_features_before_the_first_epoch(
    data_copy, write_config, tmp_path, capsys, no_epoch, damage, fragments
):
    path = data_copy.feat_dir / f"{VICTIM}.npy"
    feats = np.load(path)
    if damage == "missing":
        path.unlink()
    elif damage == "channels":
        np.save(path, feats[:, :31])
    elif damage in ("nan", "inf"):
        feats[5, 3] = np.nan if damage == "nan" else np.inf
        np.save(path, feats)
    else:
        np.save(path, feats[:5])
    msg = run_error(capsys, "train", write_config(data_copy), "--out", tmp_path / "run")
    assert f"video {VICTIM!r}" in msg and str(path) in msg
    for fragment in fragments:
        assert fragment in msg
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_train_checks_the_validation_subset_too(data_copy, write_config, tmp_path, capsys, no_epoch):
    (data_copy.feat_dir / "video_testing_00005.npy").unlink()
    config = write_config(data_copy, dataset={"val_subset": data_copy.test_subset})
    msg = run_error(capsys, "train", config, "--out", tmp_path / "run")
    assert "'video_testing_00005'" in msg and "not found" in msg


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("", ["is empty", "expected a JSON object"]),  # an empty file
        ('{"database": {}}', ['"database" is empty']),
        ('{"database": {"v": {"subset": "training", ', ["is not valid JSON", "line 1"]),
    ],
)
def test_train_rejects_empty_or_malformed_annotation_file(
    data_copy, write_config, tmp_path, capsys, no_epoch, content, fragments
):
    data_copy.annotation_path.write_text(content)
    msg = run_error(capsys, "train", write_config(data_copy), "--out", tmp_path / "run")
    assert msg.startswith(f"annotation file {data_copy.annotation_path}")
    for fragment in fragments:
        assert fragment in msg


@pytest.mark.parametrize(
    "segment, fragments",
    [
        ([1.0, 40.0], ["outside [0, duration]", "segment [1.0, 40.0] with duration {duration}"]),
        ([-3.0, 1.0], ["outside [0, duration]", "segment [-3.0, 1.0] with duration {duration}"]),
        ([3.0, 3.0], ["annotation 1", "segment [3.0, 3.0] has end <= start"]),
        ([3.0, 2.0], ["annotation 1", "segment [3.0, 2.0] has end <= start"]),
    ],
)
def test_train_rejects_bad_segments(data_copy, write_config, tmp_path, capsys, no_epoch, segment, fragments):
    entry = json.loads(data_copy.annotation_path.read_text())["database"][VICTIM]
    assert entry["duration"] < 40.0
    good = {"label": "action00", "label_id": 0, "segment": [0.5, 1.5]}
    bad = {"label": "action00", "label_id": 0, "segment": segment}
    edit_json(data_copy.annotation_path, lambda d: d["database"][VICTIM].update(annotations=[good, bad]))
    msg = run_error(capsys, "train", write_config(data_copy), "--out", tmp_path / "run")
    assert str(data_copy.annotation_path) in msg and f"video {VICTIM!r}" in msg
    for fragment in fragments:
        assert fragment.format(duration=entry["duration"]) in msg


def test_train_rejects_a_label_outside_the_class_list(tiny_data, write_config, tmp_path, capsys, no_epoch):
    config = write_config(tiny_data, dataset={"class_names": ["action00", "action01", "action02"]})
    msg = run_error(capsys, "train", config, "--out", tmp_path / "run")
    assert "label 'action03' is not a known class" in msg and "['action00', 'action01', 'action02']" in msg
    assert str(tiny_data.annotation_path) in msg and "video 'video_training_" in msg


# -------------------------------------------------------------------------------------- bad config / runs
def test_train_rejects_unknown_config_keys(tiny_data, write_config, tmp_path, capsys, no_epoch):
    config = write_config(tiny_data, model={"embed_dims": 16})
    msg = run_error(capsys, "train", config, "--out", tmp_path / "run")
    assert msg.startswith(f"invalid config {config}") and "unknown key 'model.embed_dims'" in msg

    config = write_config(tiny_data, name="good.yaml")
    msg = run_error(capsys, "train", config, "--out", tmp_path / "run", "--set", "train.lrr=1e-3", "train.lr=fast")
    assert "unknown key 'train.lrr'" in msg and "key 'train.lr'" in msg and "'fast'" in msg
    msg = run_error(capsys, "train", config, "--out", tmp_path / "run", "--set", "train.lr")
    assert "override 'train.lr' is not of the form key=value" in msg
    assert not (tmp_path / "run").exists()


def test_test_rejects_a_checkpoint_of_another_config(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    edit = yaml.safe_load((run_dir / "config.yaml").read_text())
    edit["model"]["embed_dim"] = 24
    (run_dir / "config.yaml").write_text(yaml.safe_dump(edit))
    msg = run_error(capsys, "test", run_dir, "--quiet")
    assert f"checkpoint {run_dir / 'checkpoints' / 'last.pt'} was trained with another configuration" in msg
    assert "model.embed_dim: checkpoint has 16, config has 24" in msg


def test_test_reports_a_missing_test_feature_file(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    feat_dir = tmp_path / "features"
    shutil.copytree(cfg["dataset"]["feat_dir"], feat_dir)
    (feat_dir / "video_testing_00003.npy").unlink()
    cfg["dataset"]["feat_dir"] = str(feat_dir)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    msg = run_error(capsys, "test", run_dir, "--quiet")
    assert "video 'video_testing_00003'" in msg and "not found" in msg
    assert not (run_dir / "predictions.json").exists()


def test_resume_needs_a_run_and_a_run_needs_resume(trained_run, tiny_data, write_config, tmp_path, capsys, no_epoch):
    config = write_config(tiny_data)
    (tmp_path / "empty").mkdir()
    msg = run_error(capsys, "train", config, "--out", tmp_path / "empty", "--resume")
    assert msg == (
        f"nothing to resume in {tmp_path / 'empty'}: checkpoint {tmp_path / 'empty' / 'checkpoints' / 'last.pt'} "
        "does not exist, and there is no prev.pt to fall back to; to start over, train without --resume\n"
    )
    before = (trained_run / "checkpoints" / "last.pt").stat().st_mtime_ns
    msg = run_error(capsys, "train", config, "--out", trained_run)
    assert f"{trained_run} already holds a run; pass --resume" in msg
    assert (trained_run / "checkpoints" / "last.pt").stat().st_mtime_ns == before  # left alone


def test_test_and_detect_reject_what_is_not_a_run(tmp_path, tiny_data, capsys):
    msg = run_error(capsys, "test", tmp_path)
    assert f"{tmp_path} is not a cltdr run directory (no config.yaml)" in msg
    msg = run_error(
        capsys, "detect", tmp_path, tiny_data.feat_dir / "video_testing_00000.npy", "--out", tmp_path / "p.json"
    )
    assert "is not a cltdr run directory" in msg


def test_detect_rejects_bad_feature_files(trained_run, tmp_path, capsys):
    short, wide = tmp_path / "short.npy", tmp_path / "wide.npy"
    np.save(short, np.zeros((6, 32), np.float32))
    np.save(wide, np.zeros((100, 64), np.float32))
    msg = run_error(capsys, "detect", trained_run, short, "--out", tmp_path / "p.json", "--fps", "30")
    assert f"video 'short': feature file {short} has 6 steps" in msg and "at least 8 steps" in msg
    msg = run_error(capsys, "detect", trained_run, wide, "--out", tmp_path / "p.json", "--fps", "30")
    assert f"feature file {wide}: expected (T, 32), got (T, 64)" in msg
    msg = run_error(capsys, "detect", trained_run, wide, "--out", tmp_path / "p.json")
    assert "no dataset.default_fps: pass --fps" in msg
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    "content, fragments",
    [
        ('{"results": {"video_testing_00000": [', ["prediction file {pred} is not valid JSON", "line 1"]),
        (
            '{"results": {"video_testing_00000": [{"label": "action00", "segment": [1, 2]}]}}',
            ["video 'video_testing_00000', entry 0", "missing score"],
        ),
        (
            '{"results": {"video_testing_00000": [{"label": "action00", "score": 0.5, "segment": [4, 2]}]}}',
            ["video 'video_testing_00000', entry 0", "[4, 2] ends before it starts"],
        ),
        (
            '{"results": {"video_testing_00000": {"label": "action00"}}}',
            ["video 'video_testing_00000'", "expected a list of detections"],
        ),
    ],
)
def test_evaluate_rejects_malformed_predictions(tiny_data, tmp_path, capsys, content, fragments):
    pred = tmp_path / "pred.json"
    pred.write_text(content)
    msg = run_error(
        capsys, "evaluate", "--gt", tiny_data.annotation_path, "--pred", pred, "--subset", tiny_data.test_subset
    )
    assert str(pred) in msg
    for fragment in fragments:
        assert fragment.format(pred=pred) in msg


def test_evaluate_rejects_bad_thresholds_subsets_and_files(tiny_data, tmp_path, capsys):
    pred = tmp_path / "pred.json"
    pred.write_text('{"results": {}}')
    argv = ["--gt", tiny_data.annotation_path, "--pred", pred]
    msg = run_error(capsys, "evaluate", *argv, "--subset", tiny_data.test_subset, "--tiou", "0.5", "50")
    assert "--tiou" in msg and "[50.0]" in msg and "(0, 1]" in msg
    msg = run_error(capsys, "evaluate", *argv, "--subset", tiny_data.test_subset, "--tiou", "0")  # issue 13, item 4
    assert "[0.0]" in msg and "(0, 1]" in msg
    msg = run_error(capsys, "evaluate", *argv, "--subset", "val")
    assert "no annotated video in subset 'val'" in msg and "'testing', 'training'" in msg
    msg = run_error(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--pred", pred, "--subset", "test")
    assert msg == f"ground-truth file not found: {tmp_path / 'gt.json'}\n"


# --------------------------------------------------------------------------------------- interruption
def test_interrupted_training_exits_130_with_a_resume_hint(tiny_data, write_config, tmp_path, capsys, monkeypatch):
    def interrupt(self, logger):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_epoch", interrupt)
    run_dir = tmp_path / "run"
    rc = cli.main(["train", str(write_config(tiny_data)), "--out", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 130
    assert err == f"cltdr train: interrupted; continue with `cltdr train ... --out {run_dir} --resume`\n"


# ------------------------------------------------------------------------------ the real console script
def _console_script() -> str:
    script = Path(sys.executable).with_name("cltdr")
    return str(script) if script.exists() else shutil.which("cltdr") or pytest.skip("no cltdr script installed")


def test_console_script_reports_errors_without_a_traceback(tiny_data, write_config, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    config = write_config(tiny_data)
    proc = subprocess.run(
        [_console_script(), "train", str(config), "--out", str(tmp_path / "run"), "--set", "model.embed_dims=8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"cltdr train: error: invalid config {config}:")
    assert "unknown key 'model.embed_dims'" in proc.stderr
    assert "Traceback" not in proc.stderr

    pred = tmp_path / "pred.json"
    pred.write_text("not json")
    proc = subprocess.run(
        [
            _console_script(),
            "evaluate",
            "--gt",
            str(tiny_data.annotation_path),
            "--pred",
            str(pred),
            "--subset",
            "testing",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"cltdr evaluate: error: prediction file {pred} is not valid JSON")
    assert "Traceback" not in proc.stderr
