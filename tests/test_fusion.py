"""Fusion with external video-level class scores (the ActivityNet recipe): the fusion rule by hand, the score
file formats, class-agnostic evaluation, and `cltdr test` writing the metrics with and without fusion."""

from __future__ import annotations

import json

import pytest

from cltdr import cli
from cltdr.config import config_from_dict
from cltdr.errors import DataError
from cltdr.inference.fusion import ClassScores, evaluation_ground_truth, fuse_detections, load_class_scores


def det(score, start, end, label="action"):
    return {"label": label, "score": score, "segment": [start, end]}


def test_fusion_rule_by_hand():
    results = {"v_abc": [det(0.5, 1, 2), det(0.9, 3, 4), det(0.1, 5, 6)], "def": []}
    scores = ClassScores(["a", "b", "c"], {"abc": [0.2, 0.7, 0.1], "def": [1.0, 0.0, 0.0]}, "s.json")
    fused = fuse_detections(results, scores, topk=2, max_segments=2)  # 'v_abc' found as 'abc'
    # the 2 best segments (0.9, 0.5) x the 2 best classes (b 0.7, a 0.2), sorted by the product
    assert fused["v_abc"] == [
        det(0.9 * 0.7, 3, 4, "b"),
        det(0.5 * 0.7, 1, 2, "b"),
        det(0.9 * 0.2, 3, 4, "a"),
        det(0.5 * 0.2, 1, 2, "a"),
    ]
    assert fused["def"] == []
    with pytest.raises(DataError, match=r"class score file s\.json has no scores for video 'ghi' \(2 videos"):
        fuse_detections({"ghi": []}, scores)


def test_score_file_formats(tmp_path):
    (tmp_path / "cuhk.json").write_text(
        json.dumps({"results": {"v1": [0.1, 0.9]}, "class": ["x", "y"], "version": "CUHK"})
    )
    s = load_class_scores(tmp_path / "cuhk.json")
    assert s.class_names == ["x", "y"] and s.of("v1").tolist() == [0.1, 0.9]
    (tmp_path / "named.json").write_text(json.dumps({"v1": {"y": 0.9, "x": 0.1}, "v2": {"z": 0.5}}))
    s = load_class_scores(tmp_path / "named.json")
    assert s.class_names == ["x", "y", "z"] and s.of("v2").tolist() == [0.0, 0.0, 0.5]
    for content, fragment in [
        ({"results": {"v1": [0.1]}}, "has no 'class' list"),
        ({"results": {"v1": [0.1]}, "class": ["x", "y"]}, "video 'v1': expected 2 finite"),
        ([1, 2], "expected a JSON object"),
        ({"results": {}}, "non-empty mapping"),
    ]:
        (tmp_path / "bad.json").write_text(json.dumps(content))
        with pytest.raises(DataError, match=fragment):
            load_class_scores(tmp_path / "bad.json")


def test_class_agnostic_ground_truth():
    gt = {"database": {"v": {"subset": "test", "annotations": [{"label": "a", "segment": [0, 1]}]}}}
    base = {"annotation_file": "a.json", "feat_dir": "f"}
    assert evaluation_ground_truth(config_from_dict({"dataset": base}), gt) is gt
    merged = evaluation_ground_truth(config_from_dict({"dataset": {**base, "class_agnostic": True}}), gt)
    assert merged["database"]["v"]["annotations"][0]["label"] == "action"
    assert gt["database"]["v"]["annotations"][0]["label"] == "a"  # the original is untouched


def test_test_writes_metrics_with_and_without_fusion(tiny_data, write_config, tmp_path, capsys):
    database = json.loads(tiny_data.annotation_path.read_text())["database"]
    test_videos = {v: e for v, e in database.items() if e["subset"] == tiny_data.test_subset}
    names = tiny_data.class_names
    oracle = {
        v: [1.0 if any(a["label"] == n for a in e["annotations"]) else 0.01 for n in names]
        for v, e in test_videos.items()
    }
    (tmp_path / "scores.json").write_text(json.dumps({"results": oracle, "class": names}))
    config = write_config(
        tiny_data,
        dataset={
            "class_agnostic": True,
            "fusion": {"score_file": str(tmp_path / "scores.json"), "topk": 2, "max_segments": 50},
        },
        train={"warmup_epochs": 0},
    )
    run = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(run), "--quiet"]) == 0
    assert cli.main(["test", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "with external class scores" in out and "metrics_fused.json" in out
    plain = json.loads((run / "metrics.json").read_text())
    fused = json.loads((run / "metrics_fused.json").read_text())
    assert list(plain["per_class_ap"]) == ["action"]  # class-agnostic mAP without fusion
    assert set(fused["per_class_ap"]) == set(names)
    predictions = json.loads((run / "predictions_fused.json").read_text())["results"]
    assert set(predictions) == set(test_videos)
    for video, entries in predictions.items():
        assert len(entries) <= 2 * 50 and {e["label"] for e in entries} <= set(names)
