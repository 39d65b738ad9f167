"""DETAD-style diagnosis: error types, false-positive profile and removal gains, sensitivity and false-negative
rates against the per-prediction reference of eval_reference.py, bins and characteristics by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cltdr.errors import DataError
from cltdr.evaluation import diagnosis as D
from cltdr.evaluation import match
from eval_reference import ERROR_TYPES, Reference, gt_rows, pred_rows
from test_eval_metrics import arrays, random_case


@pytest.mark.parametrize("seed", range(25))
def test_diagnosis_agrees_with_reference(seed):
    gt, pred = random_case(np.random.default_rng(seed))
    thresholds = [0.3, 0.5, 0.7] if seed % 2 else [0.5]
    ref = Reference(gt_rows(gt, "test"), pred_rows(pred), thresholds)
    g, p = arrays(gt, pred)
    matching = match(g, p, thresholds)
    nc = len(g.labels) / g.num_classes
    types = D.error_types(g, matching)
    assert [[ERROR_TYPES[x] for x in row] for row in types] == [
        [ref.error_type(i, t) for i in range(len(ref.preds))] for t in range(len(thresholds))
    ]

    fp = D.false_positive_analysis(types, matching, nc)
    profile = ref.fp_profile()
    for b in np.nonzero(fp.block_sizes)[0]:
        np.testing.assert_allclose(fp.block_shares[b], [profile[b][name] for name in ERROR_TYPES], atol=1e-12)
    assert fp.average_map_n == pytest.approx(ref.mean_ap_n(10), abs=1e-9)
    np.testing.assert_allclose(fp.removal_gain, [ref.removal_gain(name) for name in ERROR_TYPES[1:]], atol=1e-9)

    values = D.characteristics(g)
    durations = {v: 30.0 for v in g.videos}
    for name, bins in D.CHARACTERISTIC_BINS["activitynet"].items():
        np.testing.assert_allclose(values[name], [ref.characteristic(name, i, durations) for i in range(len(ref.gt))])
        assigned = bins.assign(values[name])
        sens = D.sensitivity(matching, g.labels, assigned, len(bins.names), nc)
        fn = D.false_negative_rates(matching, assigned, len(bins.names), nc)
        for b in range(len(bins.names)):
            in_bin = list(assigned == b)
            np.testing.assert_allclose(sens[b], ref.sensitivity(in_bin), atol=1e-9)
            np.testing.assert_allclose(fn[b], ref.false_negative_rate(in_bin), atol=1e-12)


def test_error_types_by_hand():
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "duration": 100.0,
                "annotations": [{"label": "a", "segment": [0, 10]}, {"label": "b", "segment": [20, 30]}],
            },
            "w": {"subset": "test"},
        }
    }
    dets = [
        ("a", 0.9, [0, 10]),  # true positive
        ("a", 0.8, [0, 9]),  # tIoU 0.9 with a taken 'a': double detection
        ("a", 0.7, [20, 29]),  # tIoU 0.9 with a 'b': wrong label
        ("b", 0.6, [22, 40]),  # tIoU 8/20 = 0.4 with its own class: localization
        ("b", 0.5, [8, 14]),  # tIoU 2/14 with an 'a', none with a 'b': confusion
        ("a", 0.4, [60, 70]),  # no overlap: background
    ]
    pred = {
        "results": {
            "v": [{"label": lab, "score": s, "segment": seg} for lab, s, seg in dets],
            "w": [{"label": "a", "score": 0.95, "segment": [0, 10]}],
        }
    }  # a video without actions
    g, p = arrays(gt, pred)
    types = D.error_types(g, match(g, p, [0.5]))
    assert [ERROR_TYPES[t] for t in types[0]] == [
        "true_positive",
        "double_detection",
        "wrong_label",
        "localization",
        "confusion",
        "background",
        "background",
    ]


def test_equal_tiou_with_two_classes_takes_the_first_in_file_order():
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "annotations": [
                    {"label": "b", "segment": [0, 4]},
                    {"label": "a", "segment": [6, 10]},
                    {"label": "a", "segment": [50, 60]},
                ],
            }
        }
    }
    pred = {"results": {"v": [{"label": "a", "score": 0.5, "segment": [2, 8]}]}}  # tIoU 2/8 with both
    g, p = arrays(gt, pred)
    assert ERROR_TYPES[D.error_types(g, match(g, p, [0.5]))[0, 0]] == "confusion"


def test_profile_blocks_and_cumulative_by_hand():
    # one class, G = 2; ranking: TP, FP(background), TP, FP -> 1G: half TP; 2G: half; top-2G: half.
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "annotations": [{"label": "a", "segment": [0, 10]}, {"label": "a", "segment": [20, 30]}],
            }
        }
    }
    pred = {
        "results": {
            "v": [
                {"label": "a", "score": s, "segment": seg}
                for s, seg in ((0.9, [0, 10]), (0.8, [50, 60]), (0.7, [20, 30]), (0.6, [70, 80]))
            ]
        }
    }
    g, p = arrays(gt, pred)
    m = match(g, p, [0.5])
    fp = D.false_positive_analysis(D.error_types(g, m), m, normalized_count=2.0)
    assert fp.block_sizes.tolist() == [2, 2] + [0] * 8
    assert fp.block_shares[0].tolist() == [0.5, 0, 0, 0, 0, 0.5] == fp.block_shares[1].tolist()
    assert fp.cumulative_shares[1].tolist() == [0.5, 0, 0, 0, 0, 0.5]
    # removing background errors leaves TP, TP: AP_N 1 instead of (1/2)(1) + (1/2)(2/3)
    assert fp.average_map_n == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert fp.removal_gain[D.BACKGROUND - 1] == pytest.approx(1 - (0.5 + 0.5 * 2 / 3))
    assert fp.removal_gain[D.DOUBLE_DETECTION - 1] == 0.0


def test_bins_follow_pandas_cut_with_include_lowest():
    bins = D.Bins((0, 1, 2, math.inf), ("S", "M", "L"))
    values = np.array([0, 0.5, 1, 1.0001, 2, 7, -0.1, np.nan])
    assert bins.assign(values).tolist() == [0, 0, 0, 1, 1, 2, -1, -1]
    instances = D.CHARACTERISTIC_BINS["thumos14"]["num_instances"]
    assert instances.assign(np.array([1, 2, 40, 41, 80, 81])).tolist() == [0, 1, 1, 2, 2, 3]


def test_characteristics_by_hand():
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "duration": 50.0,
                "annotations": [
                    {"label": "a", "segment": [0, 10]},
                    {"label": "b", "segment": [20, 25]},
                    {"label": "a", "segment": [30, 31]},
                ],
            }
        }
    }
    g, _ = arrays(gt, {"results": {}})
    values = D.characteristics(g)
    np.testing.assert_allclose(values["length"], [10, 5, 1])
    np.testing.assert_allclose(values["coverage"], [0.2, 0.1, 0.02])
    np.testing.assert_allclose(values["num_instances"], [2, 1, 2])


def test_diagnose_json_and_summary():
    gt, pred = random_case(np.random.default_rng(7))
    d = D.diagnose(gt, pred, "test", [0.5], bins="activitynet")
    out = json.loads(json.dumps(d.to_json(), allow_nan=False))  # strict JSON: empty bins are null
    assert list(out["false_positives"]["profile"]) == [f"{k}G" for k in range(1, 11)]
    assert set(out["false_positives"]["removal_gain"]) == set(ERROR_TYPES[1:])
    assert set(out["sensitivity"]) == {"average_mAP_N", "coverage", "length", "num_instances"}
    assert out["sensitivity"]["length"]["XS"]["range"] == [0, 30]
    assert "false-positive profile at 1G" in d.format_summary()
    with pytest.raises(ValueError, match="bins must be one of"):
        D.diagnose(gt, pred, "test", [0.5], bins="kinetics")
    with pytest.raises(ValueError, match="min_tiou"):
        D.diagnose(gt, pred, "test", [0.5], min_tiou=0.6)


def test_coverage_needs_durations():
    gt = {"database": {"vid3": {"subset": "test", "annotations": [{"label": "a", "segment": [0, 10]}]}}}
    with pytest.raises(DataError, match="video 'vid3' has no 'duration'"):
        D.diagnose(gt, {"results": {}}, "test")
