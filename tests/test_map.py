"""Tests of the ActivityNet-style mAP against a slow reference that follows ActivityNet's eval_detection.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cltdr.errors import DataError
from cltdr.evaluation import MapResult, clean_ground_truth, evaluate_map, validate_predictions
from cltdr.utils.io import read_json as load_json

THUMOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14.json"
THUMOS_THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7]


# ----------------------------------------------------------------------------------------------------------
# Slow reference: plain loops, one prediction and one ground truth at a time, as in ActivityNet.
# ----------------------------------------------------------------------------------------------------------
def reference_clean(database: dict, subset: str) -> list[tuple[str, float, float, str]]:
    rows = []
    for video, info in database.items():
        if info["subset"].lower() != subset.lower():
            continue
        kept = []
        for ann in info["annotations"]:
            start, end, label = float(ann["segment"][0]), float(ann["segment"][1]), ann["label"]
            if end - start < 1e-3:
                continue
            duplicate = False
            for s, e, lab in kept:
                if lab == label and abs(s - start) <= 1e-3 and abs(e - end) <= 1e-3:
                    duplicate = True
            if not duplicate:
                kept.append((start, end, label))
        rows += [(video, s, e, lab) for s, e, lab in kept]
    return rows


def reference_segment_iou(target, candidates):
    tt1 = np.maximum(target[0], candidates[:, 0])
    tt2 = np.minimum(target[1], candidates[:, 1])
    inter = (tt2 - tt1).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    return inter.astype(float) / union


def reference_interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def reference_class_ap(gt, pred, thresholds):
    """gt: [(video, start, end)] in file order; pred: [(video, start, end, score)] in file order."""
    ap = np.zeros(len(thresholds))
    if not pred:
        return ap
    lock_gt = -np.ones((len(thresholds), len(gt)))
    sort_idx = np.array([p[3] for p in pred], dtype=float).argsort()[::-1]
    pred = [pred[i] for i in sort_idx]
    tp = np.zeros((len(thresholds), len(pred)))
    fp = np.zeros((len(thresholds), len(pred)))
    gt_by_video: dict[str, list[int]] = {}
    for j, g in enumerate(gt):
        gt_by_video.setdefault(g[0], []).append(j)
    for idx, p in enumerate(pred):
        if p[0] not in gt_by_video:
            fp[:, idx] = 1
            continue
        this_gt = gt_by_video[p[0]]
        tiou = reference_segment_iou(np.array(p[1:3]), np.array([gt[j][1:3] for j in this_gt]))
        tiou_sorted_idx = tiou.argsort()[::-1]
        for t, thr in enumerate(thresholds):
            for jdx in tiou_sorted_idx:
                if tiou[jdx] < thr:
                    fp[t, idx] = 1
                    break
                if lock_gt[t, this_gt[jdx]] >= 0:
                    continue
                tp[t, idx] = 1
                lock_gt[t, this_gt[jdx]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_cum, fp_cum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall, precision = tp_cum / len(gt), tp_cum / (tp_cum + fp_cum)
    for t in range(len(thresholds)):
        ap[t] = reference_interpolated_prec_rec(precision[t], recall[t])
    return ap


def reference_map(ground_truth: dict, predictions: dict, subset: str, thresholds) -> tuple[list[str], np.ndarray]:
    gt_rows = reference_clean(ground_truth["database"], subset)
    classes = sorted({row[3] for row in gt_rows})
    ap = np.zeros((len(thresholds), len(classes)))
    for k, c in enumerate(classes):
        gt = [(v, s, e) for v, s, e, lab in gt_rows if lab == c]
        pred = [
            (v, float(p["segment"][0]), float(p["segment"][1]), p["score"])
            for v, entries in predictions["results"].items()
            for p in entries
            if p["label"] == c
        ]
        ap[:, k] = reference_class_ap(gt, pred, thresholds)
    return classes, ap


def assert_agrees_with_reference(ground_truth, predictions, subset, thresholds):
    result = evaluate_map(ground_truth, predictions, subset, thresholds)
    classes, ap = reference_map(ground_truth, predictions, subset, thresholds)
    assert result.class_names == classes
    assert result.ap.shape == (len(thresholds), len(classes))
    np.testing.assert_allclose(result.ap, ap, rtol=0, atol=1e-9)
    return result


# ----------------------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------------------
def make_gt(videos: dict[str, list[tuple[float, float, str]]], subset: str = "test") -> dict:
    return {
        "database": {
            v: {
                "subset": subset,
                "duration": 100.0,
                "fps": 30.0,
                "annotations": [{"label": lab, "segment": [s, e]} for s, e, lab in anns],
            }
            for v, anns in videos.items()
        }
    }


def make_pred(videos: dict[str, list[tuple[float, float, str, float]]]) -> dict:
    return {
        "results": {
            v: [{"label": lab, "score": sc, "segment": [s, e]} for s, e, lab, sc in dets] for v, dets in videos.items()
        }
    }


def random_case(rng: np.random.Generator, dense: bool = False) -> tuple[dict, dict]:
    """Integer-grid segments and few distinct scores, so that tIoU and score ties are frequent; ``dense``
    packs many same-length segments of two classes on a short grid, so that tIoU ties between ground
    truths decide matches."""
    classes = ["a", "b"] if dense else ["a", "b", "c", "d"]
    span, lengths = (8, [2, 4]) if dense else (20, [0, 1, 2, 3, 4, 6])
    database = {}
    for i in range(int(rng.integers(3, 9))):
        anns = []
        for _ in range(int(rng.integers(0, 8))):
            s = float(rng.integers(0, span))
            e = s + float(rng.choice(lengths))  # zero length: dropped by the cleaning
            anns.append({"label": str(rng.choice(classes)), "segment": [s, e]})
        if anns and rng.random() < 0.3:
            anns.append(dict(anns[0]))  # exact duplicate
        if anns and rng.random() < 0.3:
            s, e = anns[-1]["segment"]
            anns.append({"label": anns[-1]["label"], "segment": [s + 5e-4, e - 5e-4]})  # near duplicate
        subset = "Test" if rng.random() < 0.8 else "Validation"
        database[f"v{i}"] = {"subset": subset, "annotations": anns}
    database["v0"]["subset"] = "TEST"
    database["v0"]["annotations"].append({"label": "a", "segment": [1.0, 4.0]})
    results = {}
    for video in list(database) + ["no_gt_1", "no_gt_2"]:
        dets = []
        for _ in range(int(rng.integers(0, 12))):
            s = float(rng.integers(0, span))
            e = s + float(rng.integers(0, 6))
            label = str(rng.choice(classes + ["unknown"]))
            score = float(rng.choice([0.1, 0.5, 0.5, 0.9])) if rng.random() < 0.7 else float(rng.random())
            dets.append({"label": label, "score": score, "segment": [s, e]})
        if dets and rng.random() < 0.5:
            dets.append(dict(dets[0]))  # duplicate prediction
        results[video] = dets
    return {"database": database}, {"results": results}


# ----------------------------------------------------------------------------------------------------------
# Agreement with the reference
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_random_cases_agree_with_reference(seed):
    rng = np.random.default_rng(seed)
    ground_truth, predictions = random_case(rng, dense=seed % 3 == 0)
    thresholds = [0.0, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.6, 0.75, 0.9, 1.0] if seed % 2 else [0.3, 0.5, 0.7]
    assert_agrees_with_reference(ground_truth, predictions, "test", thresholds)


def test_tiou_tie_between_ground_truths_is_broken_like_activitynet():
    # The prediction [1, 5] has tIoU 0.2 with both [0, 2] and [4, 6]; ActivityNet takes the first of
    # argsort()[::-1], and the next prediction then finds its own ground truth taken or free.
    gt = make_gt({"v": [(0, 2, "a"), (4, 6, "a")]})
    pred = make_pred({"v": [(1, 5, "a", 0.9), (4, 6, "a", 0.8)]})
    result = assert_agrees_with_reference(gt, pred, "test", [0.2])
    second_gt_taken_first = np.argsort(np.array([0.2, 0.2]))[::-1][0] == 1
    assert result.ap[0, 0] == pytest.approx(0.5 if second_gt_taken_first else 1.0)


def test_inner_mappings_are_accepted():
    ground_truth, predictions = random_case(np.random.default_rng(0))
    full = evaluate_map(ground_truth, predictions, "test", [0.5])
    inner = evaluate_map(ground_truth["database"], predictions["results"], "test", [0.5])
    np.testing.assert_array_equal(full.ap, inner.ap)


# ----------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------------------
def test_perfect_predictions_give_ap_one():
    anns = {"v1": [(0, 10, "a"), (20, 30, "b")], "v2": [(5, 7, "a")]}
    pred = make_pred({v: [(s, e, lab, 0.5) for s, e, lab in a] for v, a in anns.items()})
    result = evaluate_map(make_gt(anns), pred, "test", [0.5, 0.95])
    np.testing.assert_array_equal(result.ap, np.ones((2, 2)))
    assert result.average_mAP == 1.0


def test_false_positive_ranked_before_true_positive():
    # Ranking FP (other video), TP: precision 0, 1/2 at recall 0, 1 -> AP 1/2.
    gt = make_gt({"v1": [(0, 10, "a")], "v2": []})
    pred = make_pred({"v1": [(0, 10, "a", 0.8)], "v2": [(0, 10, "a", 0.9)]})
    assert evaluate_map(gt, pred, "test", [0.5]).ap[0, 0] == pytest.approx(0.5)
    # TP, FP (second hit on a matched GT), TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> 1/2 + 1/3.
    gt = make_gt({"v1": [(0, 10, "a"), (20, 30, "a")]})
    pred = make_pred({"v1": [(0, 10, "a", 0.9), (0, 9, "a", 0.8), (20, 30, "a", 0.7)]})
    assert evaluate_map(gt, pred, "test", [0.5]).ap[0, 0] == pytest.approx(0.5 + 1 / 3)


def test_threshold_decides_true_positive():
    gt = make_gt({"v": [(0, 10, "a")]})
    pred = make_pred({"v": [(0, 6, "a", 0.9)]})  # tIoU 0.6
    np.testing.assert_allclose(evaluate_map(gt, pred, "test", [0.5, 0.6, 0.7]).ap[:, 0], [1, 1, 0])


def test_class_without_predictions_and_unknown_labels():
    gt = make_gt({"v": [(0, 10, "a"), (20, 30, "b")]})
    pred = make_pred({"v": [(0, 10, "a", 0.9), (20, 30, "zebra", 0.95)]})
    result = evaluate_map(gt, pred, "test", [0.5])
    assert result.class_names == ["a", "b"]
    np.testing.assert_array_equal(result.ap, [[1.0, 0.0]])
    assert result.mAP[0] == 0.5


def test_ground_truth_cleaning():
    database = {
        "v1": {
            "subset": "Test",
            "annotations": [
                {"label": "a", "segment": [0.0, 5.0]},
                {"label": "a", "segment": [0.0005, 4.9995]},  # duplicate of the first
                {"label": "a", "segment": [0.001, 5.0]},  # duplicate: "within 1e-3" includes 1e-3
                {"label": "b", "segment": [0.0, 5.0]},  # same boundaries, other label: kept
                {"label": "a", "segment": [0.0, 5.002]},  # end 2e-3 away: kept
                {"label": "a", "segment": [7.0, 7.0005]},  # shorter than 1e-3: dropped
                {"label": "b", "segment": [0.0, 0.001]},  # exactly 1e-3 long: kept
            ],
        },
        "v2": {"subset": "Validation", "annotations": [{"label": "c", "segment": [0, 1]}]},
        "v3": {"subset": "test", "annotations": []},
    }
    cleaned = clean_ground_truth({"database": database}, "TEST")
    assert cleaned == {"v1": [(0.0, 5.0, "a"), (0.0, 5.0, "b"), (0.0, 5.002, "a"), (0.0, 0.001, "b")], "v3": []}
    result = evaluate_map(database, {"results": {}}, "test", [0.5])
    assert result.class_names == ["a", "b"]
    np.testing.assert_array_equal(result.num_ground_truth, [2, 2])
    np.testing.assert_array_equal(result.ap, [[0.0, 0.0]])


def test_result_json_and_table():
    result = MapResult(np.array([0.3, 0.75]), ["a", "b"], np.array([[1.0, 0.5], [0.5, 0.0]]), np.array([1, 2]))
    np.testing.assert_allclose(result.mAP, [0.75, 0.25])
    out = result.to_json()
    assert out["mAP"] == {"0.30": 0.75, "0.75": 0.25}
    assert out["average_mAP"] == 0.5
    assert out["per_class_ap"]["b"] == {"0.30": 0.5, "0.75": 0.0}
    json.dumps(out)
    lines = result.format_table().splitlines()
    assert len(lines) == 2 and "0.30" in lines[0] and "Avg" in lines[0]
    assert "75.00" in lines[1] and "50.00" in lines[1]


# ----------------------------------------------------------------------------------------------------------
# THUMOS14 annotations
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def thumos() -> dict:
    if not THUMOS.exists():
        pytest.skip(f"{THUMOS} not available")
    return load_json(THUMOS, "ground truth")


def test_thumos_ground_truth_as_predictions_is_perfect(thumos):
    cleaned = clean_ground_truth(thumos, "test")
    assert len(cleaned) == 212
    pred = make_pred({v: [(s, e, lab, 1.0) for s, e, lab in segs] for v, segs in cleaned.items()})
    result = evaluate_map(thumos, pred, "test", THUMOS_THRESHOLDS)
    assert len(result.class_names) == 20
    np.testing.assert_array_equal(result.mAP, np.ones(5))


def test_thumos_jittered_predictions_agree_with_reference(thumos):
    rng = np.random.default_rng(14)
    cleaned = clean_ground_truth(thumos, "test")
    classes = sorted({lab for segs in cleaned.values() for _, _, lab in segs})
    validation = [v for v, info in thumos["database"].items() if info["subset"] == "Validation"]
    results = {}
    for video, segs in cleaned.items():
        dets = []
        for s, e, lab in segs:
            for _ in range(int(rng.integers(0, 4))):
                length = e - s
                js, je = rng.normal(0, 0.15 * length, 2)
                start = s + js
                label = lab if rng.random() < 0.9 else str(rng.choice(classes))
                score = round(float(rng.random()), 1) if rng.random() < 0.5 else float(rng.random())
                dets.append((start, max(start, e + je), label, score))
        for _ in range(int(rng.integers(0, 5))):  # background false positives
            start = float(rng.uniform(0, 200))
            dets.append((start, start + float(rng.uniform(0.5, 10)), str(rng.choice(classes)), float(rng.random())))
        results[video] = dets
    for video in validation[:20]:
        results[video] = [(1.0, 5.0, str(rng.choice(classes)), float(rng.random()))]
    result = assert_agrees_with_reference(thumos, make_pred(results), "test", THUMOS_THRESHOLDS)
    assert 0.2 < result.mAP[0] < 1.0


# ----------------------------------------------------------------------------------------------------------
# Errors name the file, video and entry
# ----------------------------------------------------------------------------------------------------------
def test_load_json_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(DataError, match="predictions file not found.*nope.json"):
        load_json(path, "predictions")


def test_load_json_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"results": {')
    with pytest.raises(DataError, match=r"broken\.json is not valid JSON.*line 1"):
        load_json(path, "predictions")
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="broken.json: expected a JSON object"):
        load_json(path, "predictions")


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"label": "a", "segment": [0, 1]}, "missing score"),
        ({"score": 0.5, "segment": [0, 1]}, "missing label"),
        ({"label": "a", "score": float("nan"), "segment": [0, 1]}, "score nan is not a finite number"),
        ({"label": "a", "score": "0.5", "segment": [0, 1]}, "score '0.5' is not a finite number"),
        ({"label": "a", "score": 0.5, "segment": [0, 1, 2]}, r"segment \[0, 1, 2\] is not \[start, end\]"),
        ({"label": "a", "score": 0.5, "segment": [0, float("inf")]}, r"segment \[0, inf\] is not \[start, end\]"),
        ({"label": "a", "score": 0.5, "segment": [3, 1]}, r"segment \[3, 1\] ends before it starts"),
        ({"label": 3, "score": 0.5, "segment": [0, 1]}, "label 3 is not a string"),
        ("oops", "expected an object"),
    ],
)
def test_malformed_prediction_names_video_and_entry(entry, message):
    predictions = {
        "results": {
            "v1": [{"label": "a", "score": 0.9, "segment": [0, 1]}],
            "video_7": [{"label": "a", "score": 0.9, "segment": [0, 1]}, entry],
        }
    }
    with pytest.raises(DataError, match=f"preds.json: video 'video_7', entry 1: {message}"):
        validate_predictions(predictions, "preds.json")
    with pytest.raises(DataError, match=f"video 'video_7', entry 1: {message}"):
        evaluate_map(make_gt({"v1": [(0, 1, "a")]}), predictions, "test", [0.5])


def test_detections_not_a_list():
    with pytest.raises(DataError, match="video 'v1': expected a list of detections"):
        validate_predictions({"results": {"v1": {"label": "a"}}}, "preds.json")


def test_bad_ground_truth_and_subset():
    gt = make_gt({"v1": [(0, 1, "a")]}, subset="Validation")
    with pytest.raises(DataError, match=r"no annotated video in subset 'test'.*\['Validation'\]"):
        evaluate_map(gt, {"results": {}}, "test", [0.5])
    gt["database"]["v1"]["annotations"].append({"label": "a"})
    with pytest.raises(DataError, match="video 'v1', annotation 1"):
        clean_ground_truth(gt, "validation")
    with pytest.raises(ValueError, match="tiou_thresholds"):
        evaluate_map(make_gt({"v1": [(0, 1, "a")]}), {"results": {}}, "test", [1.5])
