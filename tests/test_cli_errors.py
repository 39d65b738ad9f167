"""The bad inputs of issue 13 ("a new user's first week"), one table: each case prepares its files, runs one
``cltdr`` command and expects exit status 2 with ``cltdr <command>: error: ...`` holding every fragment (so no
traceback: :func:`cltdr.cli.main` returned), and no training epoch started.

The earlier list of bad inputs (missing, malformed and inconsistent files and configs) is the parametrized tests of
test_cli.py; what needs more than a message (a warning, a fallback, a log) has its own test below the table.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

from cltdr import cli
from cltdr.data import synth
from conftest import config_dict
from test_cli import edit_json, no_epoch, run_error  # noqa: F401  (no_epoch: a fixture)


@dataclass
class Env:
    """What a case may use: the test's folder, a private copy of the tiny data, the session's trained run."""

    tmp_path: Path
    data: synth.SynthInfo
    trained_run: Path
    write_config: Callable[..., Path]
    chdir: Callable[[Path], None]

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


def resume_with_no_readable_checkpoint(env: Env):
    run = env.run_copy()
    for name in ("last.pt", "prev.pt"):
        path = run / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])  # truncated
    return ["train", env.trained_config(), "--out", run, "--resume"], [
        f"nothing to resume in {run}: checkpoint {run / 'checkpoints' / 'last.pt'} cannot be read",
        f"and checkpoint {run / 'checkpoints' / 'prev.pt'} cannot be read",
        f"to start over, delete {run / 'checkpoints'} (or choose another --out) and train without --resume",
    ]


def best_without_best_pt(env: Env):
    return ["test", env.trained_run, "--checkpoint", "best", "--quiet"], [
        f"--checkpoint best: {env.trained_run / 'checkpoints' / 'best.pt'} does not exist",
        "dataset.val_subset",
        "--checkpoint last",
    ]


def perfect_predictions(annotation_path: Path, subset: str) -> dict:
    """Every annotated action of ``subset`` as a detection of score 1."""
    database = json.loads(annotation_path.read_text())["database"]
    return {
        "results": {
            video: [{"label": a["label"], "score": 1.0, "segment": a["segment"]} for a in entry["annotations"]]
            for video, entry in database.items()
            if entry["subset"] == subset
        }
    }


def evaluate_argv(env: Env, pred: dict | Path) -> list:
    if isinstance(pred, dict):
        path = env.tmp_path / "pred.json"
        path.write_text(json.dumps(pred))
        pred = path
    return ["evaluate", "--gt", env.data.annotation_path, "--pred", pred, "--subset", env.data.test_subset]


def evaluate_another_subset(env: Env):
    pred = perfect_predictions(env.data.annotation_path, env.data.train_subset)
    return evaluate_argv(env, pred), [
        f"{env.tmp_path / 'pred.json'}: none of its 16 videos is in subset 'testing' of the ground truth",
        "16 in subset 'training'",
        "e.g. 'video_training_00000', 'video_training_00001', 'video_training_00002', ...",
        "--subset",
    ]


def evaluate_no_video(env: Env):
    return evaluate_argv(env, {"results": {}}), [f"{env.tmp_path / 'pred.json'} holds no video: nothing to evaluate"]


def evaluate_ground_truth_as_predictions(env: Env):
    return evaluate_argv(env, env.data.annotation_path), [
        f"{env.data.annotation_path} is an annotation file (it has a 'database' and no 'results'), not predictions",
        "--gt",
        "predictions.json of `cltdr test`",
    ]


def nan_in_a_test_file(env: Env):
    path = env.data.feat_dir / "video_testing_00003.npy"
    feats = np.load(path)
    feats[7, 2] = np.nan
    np.save(path, feats)
    return ["train", env.write_config(env.data), "--out", env.tmp_path / "run"], [
        "1 of 8 videos of subset 'testing' cannot be used",
        f"video 'video_testing_00003': feature file {path}: 1 NaN or inf value",
        "step 7, channel 2",
    ]


def missing_feature_folder(command: str) -> Case:
    def case(env: Env):
        gone = env.tmp_path / "no-such-folder"
        config = env.write_config(env.data, dataset={"feat_dir": str(gone)})
        argv = [command, config] + (["--out", env.tmp_path / "run"] if command == "train" else [])
        missing = f"feature folder {gone} does not exist (dataset.feat_dir)"
        return argv, [f"the data the config names is missing:\n  {missing}\n"]

    return case


def relative_config(env: Env, **dataset) -> Path:
    """A config in the test's folder naming the data by paths relative to that folder."""
    data = config_dict(env.data)
    data["dataset"].update(annotation_file="data/annotations.json", feat_dir="data/features", **dataset)
    path = env.tmp_path / "relative.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def relative_paths_from_elsewhere(env: Env):
    config = relative_config(env)
    elsewhere = env.tmp_path / "elsewhere"
    elsewhere.mkdir()
    env.chdir(elsewhere)
    return ["train", config, "--out", env.tmp_path / "run"], [
        f"annotation file {elsewhere / 'data' / 'annotations.json'} does not exist (dataset.annotation_file "
        f"'data/annotations.json', relative to the current directory {elsewhere}); it exists relative to the "
        f"config's folder {env.tmp_path}: run cltdr from there or make the path absolute",
        f"feature folder {elsewhere / 'data' / 'features'} does not exist (dataset.feat_dir 'data/features', "
        f"relative to the current directory {elsewhere}); it exists",
    ]


def relative_paths_and_a_missing_file(command: str) -> Case:
    def case(env: Env):
        config = relative_config(env)
        (env.data.feat_dir / "video_training_00005.npy").unlink()
        env.chdir(env.tmp_path)
        argv = [command, config] + (["--out", env.tmp_path / "run"] if command == "train" else [])
        return argv, [
            "video 'video_training_00005'",
            "not found",
            "relative paths of the config (dataset.annotation_file 'data/annotations.json', dataset.feat_dir "
            f"'data/features') resolve against the current directory {env.tmp_path}",
        ]

    return case


def a_video(env: Env) -> Path:
    from videos import moving_video  # PyAV (the video extra, part of test)

    return moving_video(env.tmp_path / "clip.mp4", 1.5, 10.0, 32, 32)


def extract_case(extra: list, fragment: str) -> Case:
    def case(env: Env):
        return ["extract", a_video(env), "--out", env.tmp_path / "features", "--quiet", *extra], [fragment]

    return case


def extract_missing_video(env: Env):
    gone = env.tmp_path / "no-such.mp4"
    return ["extract", gone, "--backbone", "tiny3d", "--out", env.tmp_path / "f"], [f"video file not found: {gone}"]


def detect_video_without_a_card(env: Env):
    return ["detect", env.trained_run, a_video(env), "--out", env.tmp_path / "p.json"], [
        "this run was not trained on features of `cltdr extract` (its directory has no feature_card.json)",
        "extract it with the backbone its features came from and pass the feature file",
    ]


def config_disagrees_with_the_card(env: Env):
    from cltdr.extract.backbones import build_backbone
    from cltdr.extract.card import card_path, write_card
    from cltdr.extract.extract import ExtractSettings, make_card

    card = make_card(build_backbone("tiny3d"), ExtractSettings(30.0, 8, 8), (64, 64))
    write_card(env.data.feat_dir, card.model_copy(update={"dim": env.data.input_dim}))
    config = env.write_config(env.data)  # sets dataset.feat_stride to the synthetic data's 4
    return ["train", config, "--out", env.tmp_path / "run"], [
        f"dataset.feat_stride is 4.0 in {config}, but the features' card {card_path(env.data.feat_dir)} says "
        "stride 8 (tiny3d (random weights)",
        "leave dataset.feat_stride out (the card fills it)",
    ]


def _torchvision_missing() -> bool:
    try:
        import torchvision.models.video  # noqa: F401
    except Exception:
        return True
    return False


CASES: dict[str, Case] = {
    "1: --resume with another train.epochs and lr": resume_with_more_epochs,
    "1: --resume with fewer training videos": resume_with_fewer_training_videos,
    "12: --resume with neither last.pt nor prev.pt readable": resume_with_no_readable_checkpoint,
    "16: test --checkpoint best of a run without best.pt": best_without_best_pt,
    "2: evaluate predictions of another subset": evaluate_another_subset,
    "2: evaluate a prediction file without videos": evaluate_no_video,
    "9: evaluate a ground-truth file as predictions": evaluate_ground_truth_as_predictions,
    "5: train with a NaN in a test feature file": nan_in_a_test_file,
    "7: train with a feat_dir that does not exist": missing_feature_folder("train"),
    "7: check with a feat_dir that does not exist": missing_feature_folder("check"),
    "10: relative paths that exist beside the config, not in the current directory": relative_paths_from_elsewhere,
    "10: train: relative paths and a missing feature file": relative_paths_and_a_missing_file("train"),
    "10: check: relative paths and a missing feature file": relative_paths_and_a_missing_file("check"),
    "issue 10: extract with an unknown backbone": extract_case(
        ["--backbone", "c3d"], "unknown backbone 'c3d'; expected one of"
    ),
    "issue 10: extract a video that does not exist": extract_missing_video,
    "issue 10: extract --num-frames 0": extract_case(
        ["--backbone", "tiny3d", "--num-frames", "0"], "--num-frames 0: expected a whole number of frames >= 1"
    ),
    "issue 10: extract --fps 0": extract_case(
        ["--backbone", "tiny3d", "--fps", "0"], "--fps 0: the frame rate to resample to must be > 0"
    ),
    "issue 10: extract with tiny3d's (non-existent) pretrained weights": extract_case(
        ["--backbone", "tiny3d", "--weights", "pretrained"],
        "backbone tiny3d has no published weights: pass --weights random or a state-dict file",
    ),
    "issue 10: extract videomae without its model directory": extract_case(
        ["--backbone", "videomae"], "backbone videomae loads a local model directory"
    ),
    "issue 10: detect a video with a run not trained on extracted features": detect_video_without_a_card,
    "issue 10: train with a config key the features' card contradicts": config_disagrees_with_the_card,
}
if _torchvision_missing():  # CI: torchvision is optional, and its absence is a message
    CASES["issue 10: extract with a torchvision backbone where torchvision does not import"] = extract_case(
        ["--backbone", "r3d_18", "--weights", "random"],
        "torchvision's video backbones need torchvision built for torch",
    )


@pytest.mark.usefixtures("no_epoch")
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_message(case, data_copy, trained_run, write_config, tmp_path, capsys, monkeypatch):
    argv, fragments = CASES[case](Env(tmp_path, data_copy, trained_run, write_config, monkeypatch.chdir))
    msg = run_error(capsys, *map(str, argv))
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in:\n{msg}"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _visible_scalars(tb: Path) -> dict[str, list[int]]:
    """The steps of each TensorBoard tag as TensorBoard shows them: files in name order, and a session START at
    step S (``purge_step``) hiding the earlier events at steps >= S."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    seen: list[tuple[str, int]] = []
    for path in sorted(tb.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4  # length, its CRC, the record, its CRC
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                seen = [(tag, step) for tag, step in seen if step < event.step]
            seen += [(v.tag, event.step) for v in event.summary.value]
    steps: dict[str, list[int]] = {}
    for tag, step in seen:
        steps.setdefault(tag, []).append(step)
    return steps


def test_resume_falls_back_to_prev_cleans_up_and_truncates_the_logs(trained_run, tiny_iterations, tmp_path, capsys):
    """Items 11-13: a torn last.pt, a stale temporary file and a lost partial epoch's log records. The resume
    continues from prev.pt (epoch 1) with a message, ends as the uninterrupted run did, and the logs hold each step
    once (as log.jsonl and as TensorBoard shows it)."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    iters, ckpt = tiny_iterations, run / "checkpoints"
    assert torch.load(ckpt / "prev.pt", weights_only=False)["epoch"] == 1
    (ckpt / "last.pt").write_bytes((ckpt / "last.pt").read_bytes()[:5000])
    (ckpt / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    argv = ["train", trained_run.parent / "config.yaml", "--out", run, "--resume", "--quiet"]
    rc = cli.main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"checkpoint {ckpt / 'last.pt'} cannot be read" in err and f"resuming from {ckpt / 'prev.pt'}" in err
    assert f"resumed at epoch 1, step {iters} ({ckpt / 'prev.pt'})" in out
    assert f"`cltdr test {run}` will use {ckpt / 'last.pt'} (the last epoch)" in out  # item 16
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "prev.pt"]
    a, b = (torch.load(r / "checkpoints" / "last.pt", weights_only=False) for r in (trained_run, run))
    assert b["epoch"] == 2 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

    records = _records(run)
    assert [r["step"] for r in records if "loss" in r] == list(range(2 * iters))
    assert [(r["epoch"], r["step"]) for r in records if "epoch_loss" in r] == [(1, iters), (2, 2 * iters)]
    visible = _visible_scalars(run / "tb")
    assert visible["loss"] == list(range(2 * iters))
    assert sorted(visible["epoch_loss"]) == [iters, 2 * iters]


def test_a_new_run_starts_clean_logs_where_a_killed_one_left_some(tiny_data, write_config, tmp_path, capsys):
    """Item 13: killed during its first checkpoint write, a run leaves log records, TensorBoard events and a
    temporary checkpoint but no last.pt; training there again without --resume starts from nothing."""
    config = write_config(tiny_data)
    run = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(run), "--quiet"]) == 0
    first = _records(run)
    (run / "checkpoints" / "last.pt").replace(run / "checkpoints" / ".last.pt.k1ll3d.tmp")
    (run / "checkpoints" / "prev.pt").unlink()
    assert cli.main(["train", str(config), "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert [{k: v for k, v in r.items() if k != "time"} for r in _records(run)] == [
        {k: v for k, v in r.items() if k != "time"} for r in first
    ]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "prev.pt"]
    steps = _visible_scalars(run / "tb")["loss"]
    assert steps == sorted(set(steps))


def test_training_says_which_checkpoint_test_uses_and_test_warns_of_an_unfinished_run(
    tiny_data, write_config, tmp_path, capsys
):
    """Item 16: with a validation subset `cltdr test` uses best.pt, and training says so; testing a checkpoint
    of an unfinished run warns (one line)."""
    config = write_config(tiny_data, dataset={"val_subset": tiny_data.test_subset})
    run = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=False)["best"]
    assert (
        f"`cltdr test {run}` will use {run / 'checkpoints' / 'best.pt'} (epoch {best['epoch']}, the best average "
        f"mAP on subset 'testing': {100 * best['average_mAP']:.2f})" in out
    )
    assert cli.main(["test", str(run), "--checkpoint", "last", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["test", str(run), "--checkpoint", str(run / "checkpoints" / "prev.pt"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err == (
        f"cltdr test: warning: {run / 'checkpoints' / 'prev.pt'} holds epoch 1 of 2: the run is unfinished "
        f"(continue it with `cltdr train CONFIG --out {run} --resume`)\n"
    )


def test_evaluate_warns_of_predictions_outside_the_subset(data_copy, tmp_path, capsys):
    """Item 2: detections of videos outside the evaluated subset are false positives (ActivityNet's rule): a
    warning gives their count and a few ids."""
    env = Env(tmp_path, data_copy, Path(), lambda: None, lambda _: None)
    pred = perfect_predictions(data_copy.annotation_path, data_copy.test_subset)
    extra = perfect_predictions(data_copy.annotation_path, data_copy.train_subset)["results"]
    pred["results"].update({v: extra[v] for v in list(extra)[:5]})
    pred["results"]["unknown_video"] = []
    argv = [*evaluate_argv(env, pred), "--json", tmp_path / "m.json"]
    assert cli.main(list(map(str, argv))) == 0
    err = capsys.readouterr().err
    assert err == (
        f"cltdr evaluate: warning: {tmp_path / 'pred.json'}: 6 of its 14 videos are not in subset 'testing' of "
        "the ground truth (5 in subset 'training', 1 not in the ground truth; e.g. 'video_training_00000', "
        "'video_training_00001', 'video_training_00002', ...): their detections count as false positives and "
        "lower the mAP, as in the ActivityNet evaluation; leave them out or check --subset\n"
    )
    assert json.loads((tmp_path / "m.json").read_text())["average_mAP"] < 1.0


def test_epic_action_labels_of_convert_are_what_evaluate_reads(tmp_path, capsys):
    """Item 14: `cltdr convert epic-kitchens --task action` writes "verb,noun" labels, the one convention of
    `cltdr evaluate --dataset epic`: its own ground truth, as predictions, scores 100% in every table."""
    from test_convert import write_epic

    inputs = write_epic(tmp_path)
    gt = tmp_path / "actions.json"
    classes = [tmp_path / "EPIC_100_verb_classes.csv", tmp_path / "EPIC_100_noun_classes.csv"]
    argv = ["convert", "epic-kitchens", *inputs, "--task", "action", "--classes", *classes, "--out", gt]
    assert cli.main(list(map(str, argv))) == 0
    assert "open,cup" in {a["label"] for v in json.loads(gt.read_text())["database"].values() for a in v["annotations"]}
    (tmp_path / "pred.json").write_text(json.dumps(perfect_predictions(gt, "training")))
    argv = ["evaluate", "--gt", gt, "--pred", tmp_path / "pred.json", "--subset", "training", "--dataset", "epic"]
    assert cli.main([*map(str, argv), "--json", str(tmp_path / "m.json")]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "m.json").read_text())
    assert [report[task]["average_mAP"] for task in ("verb", "noun", "action")] == [1.0, 1.0, 1.0]


def test_messages_count_in_the_right_number(tmp_path):
    """Item 15: "1 step", "1 NaN or inf value", not "1 steps"."""
    from cltdr.data.features import FeatureError, check_length, load_features

    with pytest.raises(FeatureError, match=r"^v has 1 step; the model needs at least 8 steps$"):
        check_length(1, 8, None, "v")
    np.save(tmp_path / "v.npy", np.array([[0.0, np.inf], [np.nan, np.nan]], dtype=np.float32))
    with pytest.raises(FeatureError, match=r": 3 NaN or inf values \(after"):
        load_features(tmp_path / "v.npy", video_id="v", input_dim=2)


def test_every_argument_has_help_and_synth_shows_its_default_preset(capsys):
    """Item 15: every argument of every command has a help text."""
    import argparse

    missing = []
    parsers = [((), cli.build_parser())]
    while parsers:
        names, parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [((*names, n), p) for n, p in action.choices.items()]
            elif not action.help:
                missing.append(" ".join([*names, *(action.option_strings or [action.dest])]))
    assert not missing, f"arguments without help: {missing}"
    with pytest.raises(SystemExit):
        cli.main(["synth", "--help"])
    assert "(default: demo)" in capsys.readouterr().out


def test_the_epoch_line_shows_the_learning_rate_time_and_eta(tiny_data, write_config, tmp_path, capsys):
    """Item 15: "epoch 1/2: lr 0.001, 1 s, ETA 1 s; epoch_loss=..." (the lr at the end of the warm-up epoch)."""
    assert cli.main(["train", str(write_config(tiny_data)), "--out", str(tmp_path / "run")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2, lines
    assert re.fullmatch(r"epoch 1/2: lr 0\.001, \d+ s, ETA \d+ s; epoch_cls_loss=\d+\.\d{4}, .*", lines[0]), lines[0]
    assert re.fullmatch(r"epoch 2/2: lr 0, \d+ s, ETA 0 s; .*", lines[1]), lines[1]


def test_durations_read_well():
    from cltdr.utils.text import duration

    assert [duration(s) for s in (0.4, 59.6, 65, 3600 * 2 + 7 * 60 + 20)] == [
        "0 s",
        "1 min 00 s",
        "1 min 05 s",
        "2 h 07 min",
    ]


def test_configs_synth_yaml_trains_on_what_synth_writes(tmp_path, monkeypatch, capsys):
    """Item 17: `cltdr synth data/synth` then `cltdr check configs/synth.yaml` from the same folder needs no
    setting; another preset or folder needs what synth prints."""
    config = Path(__file__).parents[1] / "configs" / "synth.yaml"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["synth", "data/synth"]) == 0
    assert cli.main(["check", str(config)]) == 0, capsys.readouterr().err
    assert "result: OK" in capsys.readouterr().out
    assert cli.main(["synth", "elsewhere", "--preset", "tiny"]) == 0
    command = capsys.readouterr().out.splitlines()[-1].split()
    assert command[:3] == ["cltdr", "train", "configs/synth.yaml"] and "dataset.input_dim=32" in command
    assert cli.main(["check", str(config), "--set", *command[command.index("--set") + 1 :]]) == 0
    assert "result: OK" in capsys.readouterr().out


def test_custom_yaml_keeps_the_paper_width_and_synth_yaml_the_demo_model():
    """Item 17: configs/custom.yaml keeps width 512 and says how to shrink the model (narrower with a higher lr);
    configs/synth.yaml trains the model of `cltdr demo`."""
    from cltdr.cli.train import DEMO_CONFIG
    from cltdr.config import load_config

    root = Path(__file__).parents[1] / "configs"
    custom = load_config(root / "custom.yaml")
    assert custom.model.embed_dim == custom.model.head_dim == 512 and custom.train.lr == 1e-4
    text = (root / "custom.yaml").read_text()
    assert "embed_dim: 128, head_dim: 64, ffn_dim: 192 with train.lr: 1.0e-3" in text
    synth_cfg, demo = (yaml.safe_load(p.read_text()) for p in (root / "synth.yaml", DEMO_CONFIG))
    assert synth_cfg["model"] == demo["model"]
    assert {k: v for k, v in demo["train"].items() if k != "seed"} == synth_cfg["train"]
