"""The evaluation commands (evaluate, diagnose, plot, export, test/detect --preset), their pictures and the pure
functions behind the pictures. Every PNG is checked to exist, have the expected size and not be blank."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from cltdr.evaluation import match
from cltdr.viz.points import class_pr_curve, pack_rows, score_tiou_points, timeline
from eval_reference import Reference, gt_rows, pred_rows, tiou
from test_cli import run_error, run_ok
from test_eval_metrics import arrays, random_case


def assert_png(path: Path, min_width: int = 300, min_height: int = 200) -> None:
    pixels = image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    assert pixels.shape[0] >= min_height and pixels.shape[1] >= min_width, pixels.shape
    assert pixels[..., :3].std() > 0.02, f"{path} looks blank"


@pytest.fixture(scope="module")
def files(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """Predictions on the tiny test subset: every action found (jittered, sometimes mislabelled) plus background,
    and a class-agnostic copy without labels."""
    root = tmp_path_factory.mktemp("eval-cli")
    rng = np.random.default_rng(0)
    database = json.loads(tiny_data.annotation_path.read_text())["database"]
    results = {}
    for video, info in database.items():
        if info["subset"] != tiny_data.test_subset:
            continue
        dets = []
        for ann in info["annotations"]:
            (s, e), length = ann["segment"], ann["segment"][1] - ann["segment"][0]
            for _ in range(2):
                start, end = sorted((s + rng.normal(0, 0.1 * length), e + rng.normal(0, 0.1 * length)))
                label = ann["label"] if rng.random() < 0.85 else str(rng.choice(tiny_data.class_names))
                dets.append({"label": label, "score": float(rng.uniform(0.3, 1)), "segment": [max(start, 0), end]})
        for _ in range(5):
            start = float(rng.uniform(0, info["duration"] - 1))
            dets.append(
                {
                    "label": str(rng.choice(tiny_data.class_names)),
                    "score": float(rng.uniform(0, 0.5)),
                    "segment": [start, start + 1.0],
                }
            )
        results[video] = dets
    pred = root / "pred.json"
    pred.write_text(json.dumps({"results": results}))
    proposals = root / "proposals.json"
    proposals.write_text(
        json.dumps(
            {"results": {v: [{"score": d["score"], "segment": d["segment"]} for d in ds] for v, ds in results.items()}}
        )
    )
    return {"gt": tiny_data.annotation_path, "pred": pred, "proposals": proposals, "video": next(iter(results))}


def common(files, tiny_data) -> list:
    return ["--gt", files["gt"], "--pred", files["pred"], "--subset", tiny_data.test_subset]


# ------------------------------------------------------------------------------------------------ evaluate
def test_evaluate_writes_every_number(files, tiny_data, tmp_path, capsys):
    out = run_ok(capsys, "evaluate", *common(files, tiny_data), "--per-class", "--json", tmp_path / "e.json")
    report = json.loads((tmp_path / "e.json").read_text())
    assert list(report["mAP"]) == ["0.30", "0.40", "0.50", "0.60", "0.70"]  # no --dataset, no --tiou: THUMOS14
    assert set(report["per_class_ap"]) <= set(tiny_data.class_names)
    assert list(report["recall_at_kG"]) == ["1G", "5G", "10G"]
    assert {"AR@1", "AR@100", "AUC", "curve"} <= set(report["AR@AN"])
    assert "R@1G (%)" in out and "AR@100" in out and "#GT" in out  # the tables, per-class included


def test_evaluate_dataset_protocol_and_proposals(files, tiny_data, tmp_path, capsys):
    out = run_ok(capsys, "evaluate", *common(files, tiny_data), "--dataset", "anet", "--json", tmp_path / "a.json")
    assert [c.strip() for c in out.splitlines()[0].split("|")] == ["tIoU", "0.50", "0.75", "0.95", "Avg"]
    assert len(json.loads((tmp_path / "a.json").read_text())["mAP"]) == 10
    argv = ["--gt", files["gt"], "--pred", files["proposals"], "--subset", tiny_data.test_subset]
    out = run_ok(capsys, "evaluate", *argv, "--proposals", "--json", tmp_path / "p.json")
    report = json.loads((tmp_path / "p.json").read_text())
    assert "mAP" not in report and report["AR@AN"]["AR@100"] > 0.5 and "AR (%)" in out
    msg = run_error(capsys, "evaluate", *argv)  # without --proposals a label is required
    assert "entry 0: missing label" in msg and str(files["proposals"]) in msg


def test_evaluate_epic(tmp_path, capsys):
    gt = {
        "database": {
            "P01_01": {
                "subset": "validation",
                "duration": 60.0,
                "annotations": [{"label": "take,cup", "segment": [1, 5]}, {"label": "wash,cup", "segment": [10, 20]}],
            }
        }
    }
    pred = {
        "results": {
            "P01_01": [
                {"label": "take,cup", "score": 0.9, "segment": [1, 5]},
                {"label": "wash,plate", "score": 0.8, "segment": [10, 20]},
            ]
        }
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    argv = ["--gt", tmp_path / "gt.json", "--subset", "validation", "--dataset", "epic"]
    out = run_ok(capsys, "evaluate", *argv, "--pred", tmp_path / "pred.json", "--json", tmp_path / "e.json")
    report = json.loads((tmp_path / "e.json").read_text())
    assert list(report["verb"]["mAP"]) == ["0.10", "0.20", "0.30", "0.40", "0.50"]
    assert report["verb"]["average_mAP"] == 1.0 and report["noun"]["average_mAP"] == 0.5
    assert report["action"]["average_mAP"] == 0.5 and "action:" in out
    msg = run_error(
        capsys,
        "evaluate",
        "--gt",
        tmp_path / "gt.json",
        "--subset",
        "validation",
        "--pred-verb",
        tmp_path / "pred.json",
    )
    assert "add --dataset epic" in msg


# ------------------------------------------------------------------------------------------------ diagnose
def test_diagnose_writes_json_and_plots(files, tiny_data, tmp_path, capsys):
    out = run_ok(capsys, "diagnose", *common(files, tiny_data), "--out", tmp_path / "diag")
    report = json.loads((tmp_path / "diag" / "diagnosis.json").read_text())
    assert report["tiou_thresholds"] == [0.5] and report["bins"] == "thumos14"
    shares = report["false_positives"]["profile"]["1G"]
    assert sum(shares.values()) == pytest.approx(1.0) and shares["true_positive"] > 0.5
    for name in ("false_positive_analysis", "sensitivity_analysis", "false_negative_analysis"):
        assert_png(tmp_path / "diag" / f"{name}.png", 800, 300)
    assert "false-positive profile at 1G" in out
    run_ok(capsys, "diagnose", *common(files, tiny_data), "--dataset", "anet", "--out", tmp_path / "anet")
    report = json.loads((tmp_path / "anet" / "diagnosis.json").read_text())
    assert len(report["tiou_thresholds"]) == 10 and report["bins"] == "activitynet"


# --------------------------------------------------------------------------------------------------- plots
def test_plot_timeline_and_pr(files, tiny_data, tmp_path, capsys):
    run_ok(
        capsys,
        "plot",
        "timeline",
        *common(files, tiny_data),
        "--video",
        files["video"],
        "--top",
        "8",
        "--out",
        tmp_path / "t.png",
    )
    assert_png(tmp_path / "t.png", 800, 200)
    out = run_ok(
        capsys,
        "plot",
        "pr",
        *common(files, tiny_data),
        "--tiou",
        "0.3",
        "0.7",
        "--classes",
        "action01",
        "--out",
        tmp_path / "pr",
    )
    assert [p.name for p in (tmp_path / "pr").iterdir()] == ["pr_001_action01.png"] and "1 precision" in out
    assert_png(tmp_path / "pr" / "pr_001_action01.png", 400, 300)
    msg = run_error(
        capsys, "plot", "timeline", *common(files, tiny_data), "--video", "nope", "--out", tmp_path / "x.png"
    )
    assert "video 'nope' is neither in subset" in msg and not (tmp_path / "x.png").exists()
    msg = run_error(capsys, "plot", "pr", *common(files, tiny_data), "--classes", "dance", "--out", tmp_path / "p")
    assert "['dance'] are not classes" in msg


def test_plot_scores_runs_the_model(trained_run, tiny_data, tmp_path, capsys):
    video = "video_testing_00002"
    out = run_ok(capsys, "plot", "scores", trained_run, "--video", video, "--out", tmp_path / "s.png")
    assert_png(tmp_path / "s.png", 400, 400)
    assert "best score" in out and "tIoU" in out
    msg = run_error(
        capsys, "plot", "scores", trained_run, "--video", "video_training_00001", "--out", tmp_path / "x.png"
    )
    assert f"video 'video_training_00001' is not in subset '{tiny_data.test_subset}'" in msg


# -------------------------------------------------------------------------------------------------- export
def test_export_csv_and_detad(files, tiny_data, tmp_path, capsys):
    run_ok(capsys, "export", "--pred", files["pred"], "--format", "csv", "--out", tmp_path / "p.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "p.csv").read_text())))
    results = json.loads(files["pred"].read_text())["results"]
    assert rows[0] == ["video", "start", "end", "label", "score"]
    assert len(rows) - 1 == sum(map(len, results.values()))
    first = results[rows[1][0]]
    best = max(first, key=lambda d: d["score"])
    assert rows[1][1:] == [repr(best["segment"][0]), repr(best["segment"][1]), best["label"], repr(best["score"])]

    run_ok(
        capsys,
        "export",
        "--pred",
        files["pred"],
        "--format",
        "detad",
        "--out",
        tmp_path / "d.json",
        "--gt",
        files["gt"],
        "--subset",
        tiny_data.test_subset,
        "--gt-out",
        tmp_path / "g.json",
    )
    detad = json.loads((tmp_path / "d.json").read_text())
    assert {"version", "results", "external_data"} <= set(detad)
    gt = json.loads((tmp_path / "g.json").read_text())
    assert {"version", "taxonomy", "database"} <= set(gt)
    ann = next(a for v in gt["database"].values() for a in v["annotations"])
    assert {"coverage", "length", "num-instances", "label", "segment"} <= set(ann)
    assert ann["length"] == pytest.approx(ann["segment"][1] - ann["segment"][0])
    msg = run_error(
        capsys,
        "export",
        "--pred",
        files["pred"],
        "--format",
        "detad",
        "--out",
        tmp_path / "d.json",
        "--gt",
        files["gt"],
    )
    assert "--gt, --subset and --gt-out together" in msg


# ------------------------------------------------------------------------------------------------- presets
def test_test_and_detect_with_the_deployment_preset(trained_run, tiny_data, tmp_path, capsys, monkeypatch):
    from cltdr.inference import windowed
    from cltdr.inference.postprocess import PostprocessOptions

    used = []  # the options every video is post-processed with

    def spy(cand, opts):
        used.append(opts)
        return suppress(cand, opts)

    suppress = windowed.suppress
    monkeypatch.setattr(windowed, "suppress", spy)
    run_ok(capsys, "test", trained_run, "--out", tmp_path / "b", "--quiet")
    assert set(used) == {PostprocessOptions.preset("benchmark")}
    used.clear()
    run_ok(capsys, "test", trained_run, "--out", tmp_path / "d", "--quiet", "--preset", "deployment")
    assert set(used) == {PostprocessOptions.preset("deployment")}
    count = {}
    for name in "bd":
        results = json.loads((tmp_path / name / "predictions.json").read_text())["results"]
        count[name] = sum(map(len, results.values()))
    deployed = json.loads((tmp_path / "d" / "predictions.json").read_text())["results"]
    assert all(len(es) <= 100 and all(e["score"] >= 0.2 for e in es) for es in deployed.values())
    assert count["b"] > count["d"]
    used.clear()
    feat = tiny_data.feat_dir / "video_testing_00001.npy"
    run_ok(capsys, "detect", trained_run, feat, "--out", tmp_path / "d.json", "--fps", "30", "--preset", "deployment")
    assert set(used) == {PostprocessOptions.preset("deployment")}


# ---------------------------------------------------------------------------------------- pure functions
def test_score_tiou_points_against_a_loop():
    rng = np.random.default_rng(0)
    scores = [rng.random((6, 3)), rng.random((3, 3))]
    segments = [np.sort(rng.uniform(0, 20, (6, 3, 2)), axis=-1), np.sort(rng.uniform(0, 20, (3, 3, 2)), axis=-1)]
    gt_seg, gt_lab = np.array([[2.0, 6.0], [10.0, 15.0], [1.0, 3.0]]), np.array([2, 0, 2])
    points = score_tiou_points(scores, segments, gt_seg, gt_lab)
    expected = []
    for level, (sc, seg) in enumerate(zip(scores, segments)):
        for k in (0, 2):
            for t in range(len(sc)):
                best = max(tiou(tuple(seg[t, k]), tuple(g)) for g, lab in zip(gt_seg, gt_lab) if lab == k)
                expected.append((level, t, k, sc[t, k], best))
    got = sorted(zip(points.level, points.step, points.label, points.score, points.tiou))
    np.testing.assert_allclose(np.array(got), np.array(sorted(expected)), atol=1e-12)
    for k, i in points.best().items():
        assert points.score[i] == max(sc[:, k].max() for sc in scores)


def test_pack_rows_and_timeline_by_hand():
    segments = np.array([[0, 10], [5, 8], [10, 12], [2, 3], [0, 1]], dtype=float)
    lanes = np.array([0, 0, 0, 1, 0])
    assert pack_rows(segments, lanes).tolist() == [0, 1, 0, 0, 1]  # [0,10] row 0, [0,1] row 1, [5,8] under it
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "duration": 40.0,
                "annotations": [{"label": "b", "segment": [0, 10]}, {"label": "a", "segment": [20, 30]}],
            }
        }
    }
    pred = {
        "results": {
            "v": [
                {"label": "c", "score": 0.2, "segment": [1, 2]},
                {"label": "a", "score": 0.9, "segment": [20, 29]},
                {"label": "z", "score": 0.1, "segment": [5, 6]},
            ]
        }
    }
    t = timeline(gt, pred, "test", "v", top=2)
    assert t.classes == ["a", "b", "c"] and t.duration == 40.0
    assert t.det_score.tolist() == [0.9, 0.2] and t.det_lane.tolist() == [0, 2] and t.gt_lane.tolist() == [1, 0]


def test_pr_curve_against_reference():
    gt, pred = random_case(np.random.default_rng(11))
    ref = Reference(gt_rows(gt, "test"), pred_rows(pred), [0.5])
    g, p = arrays(gt, pred)
    m = match(g, p, [0.5])
    for k, c in enumerate(ref.classes):
        precision, recall = class_pr_curve(m, k)
        flags = ref.flags(c, 0)
        tp = np.cumsum(flags)
        np.testing.assert_allclose(recall[0], tp / ref.num_gt[c])
        np.testing.assert_allclose(precision[0], tp / np.arange(1, len(flags) + 1))
