"""`cltdr convert`: every official annotation format, written small by the tests, into the project's JSON; and
the evaluation of overlapping multi-label ground truth (MultiTHUMOS)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cltdr import cli
from cltdr.data.annotations import load_annotations, read_class_names
from cltdr.data.convert import ConvertOptions, convert
from cltdr.errors import DataError
from cltdr.evaluation import evaluate_map


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


def anet_like(extra_test_key: bool) -> dict:
    """An ActivityNet-1.3 / HACS style file: url and resolution extras, no fps, a test video without labels."""
    database = {
        "abc": {
            "subset": "training",
            "duration": 120.5,
            "url": "https://www.youtube.com/watch?v=abc",
            "resolution": "1280x720",
            "annotations": [
                {"label": "Long jump", "segment": [10.2, 20.9]},
                {"label": "Bathing dog", "segment": [30.0, 31.5]},
                {"label": "Long jump", "segment": [10.2, 20.9]},  # an exact duplicate: dropped
                {"label": "Long jump", "segment": [50.0, 50.0]},  # zero length: dropped
            ],
        },
        "def": {
            "subset": "validation",
            "duration": 60.0,
            "url": "u",
            "resolution": "640x360",
            "annotations": [{"label": "Bathing dog", "segment": [0.0, 59.9]}],
        },
        "ghi": {"subset": "testing", "duration": 33.3, "url": "u", "resolution": "640x360"},
    }
    if extra_test_key:
        database["ghi"]["annotations"] = []
    return {"version": "VERSION 1.3", "taxonomy": [], "database": database}


@pytest.mark.parametrize("fmt", ["activitynet", "hacs"])
def test_activitynet_and_hacs(tmp_path, fmt):
    src = write_json(tmp_path / "official.json", anet_like(extra_test_key=fmt == "activitynet"))
    conv = convert(fmt, [src])
    assert conv.class_names == ["Bathing dog", "Long jump"]  # alphabetical
    db = conv.database
    assert db["abc"] == {
        "subset": "training",
        "duration": 120.5,
        "annotations": [
            {"label": "Long jump", "label_id": 1, "segment": [10.2, 20.9]},
            {"label": "Bathing dog", "label_id": 0, "segment": [30.0, 31.5]},
        ],
    }
    assert db["ghi"] == {"subset": "testing", "duration": 33.3, "annotations": []}
    text = conv.summary()
    assert "dropped 1 exact duplicates" in text and "dropped 1 segments with end <= start" in text
    assert "no fps written" in text and "testing: 1 video, 0 actions" in text
    out = conv.write(tmp_path / "out.json")
    videos = load_annotations(out, subsets=["training", "validation"], default_fps=15.0).videos
    assert [v.video_id for v in videos] == ["abc", "def"] and videos[0].labels.tolist() == [1, 0]
    # a class list fixes the order; --fps writes the frame rate of the features
    (tmp_path / "classes.txt").write_text("Long jump\nBathing dog\nUnused class\n")
    conv = convert(fmt, [src], ConvertOptions(fps=15.0, classes=[tmp_path / "classes.txt"]))
    assert conv.class_names == ["Long jump", "Bathing dog", "Unused class"]
    assert conv.database["abc"]["fps"] == 15.0 and conv.database["abc"]["annotations"][1]["label_id"] == 1


def test_activitynet_errors_name_the_file_and_video(tmp_path):
    bad = anet_like(True)
    bad["database"]["abc"]["annotations"][1] = {"label": "x", "segment": [1.0]}
    with pytest.raises(DataError, match=r"official\.json, video 'abc', annotation 1: expected .*'segment'"):
        convert("activitynet", [write_json(tmp_path / "official.json", bad)])
    with pytest.raises(DataError, match="non-empty 'database'"):
        convert("activitynet", [write_json(tmp_path / "empty.json", {"database": {}})])
    (tmp_path / "classes.txt").write_text("Long jump\n")
    with pytest.raises(DataError, match=r"labels \['Bathing dog'\] are not in the class list"):
        convert(
            "hacs",
            [write_json(tmp_path / "ok.json", anet_like(True))],
            ConvertOptions(classes=[tmp_path / "classes.txt"]),
        )


# ---------------------------------------------------------------------------------------------- EPIC-Kitchens
EPIC_HEADER = (
    "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
    "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
)


def epic_row(nid, video, start, stop, verb, verb_class, noun, noun_class):
    return (
        f'{nid},P01,{video},00:00:00.00,{start},{stop},1,2,"{verb} {noun}",{verb},{verb_class},{noun},'
        f"{noun_class},\"['{noun}']\",[{noun_class}]"
    )


def write_epic(tmp_path):
    train = [
        epic_row("P01_01_0", "P01_01", "00:00:01.50", "00:00:03.25", "take", 0, "plate", 2),
        epic_row("P01_01_1", "P01_01", "00:01:02.089", "00:01:04.00", "pick-up", 0, "cup", 1),
        epic_row("P01_01_2", "P01_01", "00:01:02.089", "00:01:04.00", "open", 3, "cup", 1),
        epic_row("P01_02_0", "P01_02", "01:00:00.00", "01:00:10.5", "open", 3, "tap", 0),
    ]
    val = [epic_row("P02_01_0", "P02_01", "00:00:05.00", "00:00:07.00", "take", 0, "tap", 0)]
    (tmp_path / "EPIC_100_train.csv").write_text("\n".join([EPIC_HEADER, *train]) + "\n")
    (tmp_path / "EPIC_100_validation.csv").write_text("\n".join([EPIC_HEADER, *val]) + "\n")
    (tmp_path / "EPIC_100_verb_classes.csv").write_text(
        "id,key,instances,category\n0,take,\"['take','pick-up']\",retrieve\n1,put,[],leave\n2,wash,[],clean\n"
        "3,open,[],access\n"
    )
    (tmp_path / "EPIC_100_noun_classes.csv").write_text(
        "id,key,instances,category\n0,tap,[],appliances\n1,cup,[],cutlery\n2,plate,[],cutlery\n"
    )
    (tmp_path / "EPIC_100_video_info.csv").write_text(
        "video_id,duration,fps,resolution\nP01_01,100.0,50.0,1920x1080\nP01_02,3700.0,59.94,1920x1080\n"
    )
    return [tmp_path / "EPIC_100_train.csv", f"validation={tmp_path / 'EPIC_100_validation.csv'}"]


def test_epic_kitchens_verb_noun_action(tmp_path):
    inputs = write_epic(tmp_path)
    classes = [tmp_path / "EPIC_100_verb_classes.csv", tmp_path / "EPIC_100_noun_classes.csv"]
    verb = convert(
        "epic-kitchens",
        inputs,
        ConvertOptions(task="verb", classes=classes, fps=30.0, video_info=tmp_path / "EPIC_100_video_info.csv"),
    )
    assert verb.class_names == ["take", "put", "wash", "open"]  # every class, in id order: label_id = verb_class
    p01 = verb.database["P01_01"]
    assert p01["subset"] == "training" and p01["duration"] == 100.0 and p01["fps"] == 30.0  # --fps wins
    assert p01["annotations"] == [
        {"label": "take", "label_id": 0, "segment": [1.5, 3.25]},
        {"label": "take", "label_id": 0, "segment": [62.089, 64.0]},
        {"label": "open", "label_id": 3, "segment": [62.089, 64.0]},
    ]
    assert verb.database["P01_02"]["annotations"][0]["segment"] == [3600.0, 3610.5]
    # P02_01 is not in the video info: its duration is its last action's end + the margin
    assert verb.database["P02_01"] == {
        "subset": "validation",
        "duration": 8.0,
        "fps": 30.0,
        "annotations": [{"label": "take", "label_id": 0, "segment": [5.0, 7.0]}],
    }
    assert "1 of 3 videos had no known duration" in verb.summary()

    noun = convert("epic-kitchens", inputs, ConvertOptions(task="noun", classes=classes))
    assert noun.class_names == ["tap", "cup", "plate"] and "fps" not in noun.database["P01_01"]
    assert [a["label"] for a in noun.database["P01_01"]["annotations"]] == ["plate", "cup"]  # duplicate dropped
    assert "dropped 1 exact duplicates" in noun.summary()

    action = convert("epic-kitchens", inputs, ConvertOptions(task="action", classes=classes, margin_s=0.0))
    assert action.class_names == ["take,tap", "take,cup", "take,plate", "open,tap", "open,cup"]  # (verb, noun) ids
    assert action.database["P02_01"]["duration"] == 7.0
    # without class files the name of a class id is its most frequent verb text (ties: alphabetical)
    guessed = convert("epic-kitchens", inputs, ConvertOptions(task="verb"))
    assert guessed.class_names == ["take", "open"]  # class 0: 'take' twice, 'pick-up' once


def test_epic_errors(tmp_path):
    inputs = write_epic(tmp_path)
    bad = tmp_path / "EPIC_100_train.csv"
    bad.write_text(bad.read_text().replace("00:00:01.50", "1.5 s"))
    with pytest.raises(DataError, match=r"EPIC_100_train\.csv, line 2: timestamp '1\.5 s' is not HH:MM:SS\.ff"):
        convert("epic-kitchens", inputs)
    (tmp_path / "x.csv").write_text("video_id,start_timestamp\n")
    with pytest.raises(DataError, match=r"cannot tell the subset of 'x\.csv'"):
        convert("epic-kitchens", [tmp_path / "x.csv"])
    with pytest.raises(DataError, match=r"x\.csv: missing columns \['stop_timestamp', 'verb', 'verb_class'\]"):
        convert("epic-kitchens", [f"training={tmp_path / 'x.csv'}"])


# ------------------------------------------------------------------------------------------------ MultiTHUMOS
def write_multithumos(tmp_path):
    folder = tmp_path / "annotations"
    folder.mkdir()
    (folder / "CliffDiving.txt").write_text("video_validation_0000051 1.0 3.0\nvideo_test_0000004 5.5 8.0\n")
    (folder / "Diving.txt").write_text("video_validation_0000051 1.0 3.0\nvideo_validation_0000051 2.0 6.0\n\n")
    (folder / "Walk.txt").write_text("video_test_0000004 0.0 30.0\n")
    (tmp_path / "class_list.txt").write_text("1 Walk\n2 CliffDiving\n3 Diving\n")
    reference = {
        "database": {
            "video_validation_0000051": {"subset": "Validation", "duration": 40.0, "fps": 30.0, "annotations": []}
        }
    }
    return folder, write_json(tmp_path / "thumos14.json", reference)


def test_multithumos_keeps_identical_segments_with_different_labels(tmp_path):
    folder, reference = write_multithumos(tmp_path)
    conv = convert("multithumos", [folder], ConvertOptions(classes=[tmp_path / "class_list.txt"], video_info=reference))
    assert conv.class_names == ["Walk", "CliffDiving", "Diving"]
    val = conv.database["video_validation_0000051"]
    assert val["subset"] == "Validation" and val["duration"] == 40.0 and val["fps"] == 30.0
    assert val["annotations"] == [
        {"label": "CliffDiving", "label_id": 1, "segment": [1.0, 3.0]},
        {"label": "Diving", "label_id": 2, "segment": [1.0, 3.0]},
        {"label": "Diving", "label_id": 2, "segment": [2.0, 6.0]},
    ]
    test = conv.database["video_test_0000004"]  # not in the reference: subset from the id, duration guessed
    assert test["subset"] == "test" and test["duration"] == 31.0 and "fps" not in test
    out = conv.write(tmp_path / "multithumos.json")
    assert read_class_names(out) == ["Walk", "CliffDiving", "Diving"]
    rec = load_annotations(out, subsets=["validation"]).videos[0]
    assert rec.labels.tolist() == [1, 2, 2] and rec.segments.tolist() == [[1, 3], [1, 3], [2, 6]]
    # without a class list: every .txt of the folder, alphabetically
    assert convert("multithumos", [folder]).class_names == ["CliffDiving", "Diving", "Walk"]


def test_multithumos_errors(tmp_path):
    folder, _ = write_multithumos(tmp_path)
    (folder / "Walk.txt").write_text("video_test_0000004 0.0\n")
    with pytest.raises(DataError, match=r"Walk\.txt, line 1: expected 'video_id start end'"):
        convert("multithumos", [folder])
    (folder / "Walk.txt").write_text("myvideo 0.0 1.0\n")
    with pytest.raises(DataError, match=r"cannot tell the subset of video 'myvideo'; give --video-info"):
        convert("multithumos", [folder])
    (tmp_path / "class_list.txt").write_text("1 Walk\n2 Run\n")
    with pytest.raises(DataError, match=r"no annotation file for classes \['Run'\]"):
        convert("multithumos", [folder], ConvertOptions(classes=[tmp_path / "class_list.txt"]))


def test_evaluation_of_overlapping_multi_label_ground_truth():
    """One segment labelled CliffDiving and Diving, and an overlapping Diving: three ground-truth instances."""
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "annotations": [
                    {"label": "CliffDiving", "segment": [1.0, 3.0]},
                    {"label": "Diving", "segment": [1.0, 3.0]},
                    {"label": "Diving", "segment": [2.0, 6.0]},
                ],
            }
        }
    }
    pred = {
        "results": {
            "v": [
                {"label": "Diving", "score": 0.9, "segment": [1.0, 3.0]},  # matches Diving [1, 3] exactly
                {
                    "label": "Diving",
                    "score": 0.8,
                    "segment": [1.1, 3.0],
                },  # best left: [2, 6], tIoU 1/4.9: a false positive
                {"label": "Diving", "score": 0.7, "segment": [2.0, 6.0]},  # matches Diving [2, 6]
                {"label": "CliffDiving", "score": 0.6, "segment": [1.0, 3.0]},  # the same segment, the other label: TP
            ]
        }
    }
    result = evaluate_map(gt, pred, "test", [0.5])
    ap = dict(zip(result.class_names, result.ap[0]))
    # Diving: TP, FP, TP over 2 instances: precision envelope 1, then 2/3 at recall 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert ap["Diving"] == pytest.approx(0.5 + 1 / 3)
    assert ap["CliffDiving"] == pytest.approx(1.0)
    assert result.mAP[0] == pytest.approx((0.5 + 1 / 3 + 1.0) / 2)


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_convert(tmp_path, capsys):
    src = write_json(tmp_path / "official.json", anet_like(True))
    out = tmp_path / "out" / "anet.json"
    assert cli.main(["convert", "activitynet", str(src), "--out", str(out), "--fps", "15"]) == 0
    printed = capsys.readouterr().out
    assert "activitynet: 3 videos, 2 classes" in printed and f"wrote {out}" in printed
    data = json.loads(out.read_text())
    assert data["version"] == "cltdr-convert-activitynet" and data["database"]["def"]["fps"] == 15.0
    assert cli.main(["convert", "hacs", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "missing.json" in (err := capsys.readouterr().err) and "not found" in err
    assert np.isclose(data["database"]["abc"]["duration"], 120.5)
