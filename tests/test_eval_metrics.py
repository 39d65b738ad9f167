"""mAP, recall at k x G, AR@AN, dataset protocols, EPIC verb/noun/action and post-processing presets, against
the slow references of eval_reference.py and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from cltdr.config import TestConfig
from cltdr.errors import DataError
from cltdr.evaluation import GroundTruth, Predictions, evaluate_map, match
from cltdr.evaluation.epic import evaluate_epic, split_label
from cltdr.evaluation.proposals import average_recall
from cltdr.evaluation.protocols import PROTOCOLS, thresholds_for
from cltdr.inference.postprocess import PRESETS, PostprocessOptions, postprocess_video
from eval_reference import Reference, gt_rows, pred_rows, reference_average_recall


def random_case(rng: np.random.Generator, classes=("a", "b", "c")) -> tuple[dict, dict]:
    """Integer-grid segments and few distinct scores, so that tIoU and score ties are frequent; predictions on
    a video without ground truth and with an unknown label too."""
    database = {}
    for i in range(int(rng.integers(2, 7))):
        anns = []
        for _ in range(int(rng.integers(0, 7))):
            s = float(rng.integers(0, 20))
            anns.append({"label": str(rng.choice(classes)), "segment": [s, s + float(rng.choice([1, 2, 3, 5, 8]))]})
        database[f"v{i}"] = {"subset": "test", "duration": 30.0, "annotations": anns}
    database["v0"]["annotations"].append({"label": classes[0], "segment": [1.0, 4.0]})
    results = {}
    for video in list(database) + ["no_gt"]:
        dets = []
        for _ in range(int(rng.integers(0, 15))):
            s = float(rng.integers(0, 20))
            score = float(rng.choice([0.1, 0.5, 0.9])) if rng.random() < 0.5 else float(rng.random())
            dets.append(
                {
                    "label": str(rng.choice(list(classes) + ["zz"])),
                    "score": score,
                    "segment": [s, s + float(rng.integers(0, 7))],
                }
            )
        results[video] = dets
    return {"database": database}, {"results": results}


def arrays(gt: dict, pred: dict, subset: str = "test") -> tuple[GroundTruth, Predictions]:
    g = GroundTruth.from_annotations(gt, subset)
    return g, Predictions.from_results(pred, g, "p", require_label=False)


@pytest.mark.parametrize("seed", range(40))
def test_map_recall_and_matches_agree_with_reference(seed):
    gt, pred = random_case(np.random.default_rng(seed))
    thresholds = [0.1, 0.3, 0.5, 0.7] if seed % 2 else [0.5]
    ref = Reference(gt_rows(gt, "test"), pred_rows(pred), thresholds)
    result = evaluate_map(gt, pred, "test", thresholds)
    assert result.class_names == ref.classes
    np.testing.assert_allclose(result.ap, ref.ap(), rtol=0, atol=1e-9)
    for row, k in zip(result.recall, result.recall_budgets):
        np.testing.assert_allclose(row, ref.recall_at(k), rtol=0, atol=1e-12)
    g, p = arrays(gt, pred)
    matching = match(g, p, thresholds)
    assert matching.matched.tolist() == [
        [ref.matched[i][t] for i in range(len(ref.preds))] for t in range(len(thresholds))
    ]


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("max_avg", [100, 2, 0.7])
def test_average_recall_agrees_with_activitynet_loops(seed, max_avg):
    gt, pred = random_case(np.random.default_rng(seed))
    thresholds = [0.1, 0.5, 0.9]
    result = average_recall(*arrays(gt, pred), thresholds, max_avg)
    recall, an = reference_average_recall(gt_rows(gt, "test"), pred_rows(pred), thresholds, max_avg)
    np.testing.assert_allclose(result.recall, recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.average_number, an, rtol=0, atol=1e-9)


def test_recall_at_kg_by_hand():
    # class a: 2 instances, ranking TP, FP, FP, TP -> 1/2 within 1G (2 predictions), 2/2 within 2G.
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
                for s, seg in ((0.9, [0, 10]), (0.8, [50, 60]), (0.7, [70, 80]), (0.6, [20, 30]))
            ]
        }
    }
    result = evaluate_map(gt, pred, "test", [0.5], recall_budgets=(1, 2))
    np.testing.assert_allclose(result.recall, [[0.5], [1.0]])
    assert result.to_json()["recall_at_kG"] == {"1G": {"0.50": 0.5}, "2G": {"0.50": 1.0}}


def test_average_recall_by_hand():
    # Two videos, one action each; each video's proposals: a miss first, then a hit. AN=1 recalls nothing,
    # AN=2 everything; labels are ignored.
    gt = {"database": {v: {"subset": "test", "annotations": [{"label": "a", "segment": [0, 10]}]} for v in "xy"}}
    pred = {
        "results": {
            v: [{"score": 0.9, "segment": [50, 60]}, {"label": "b", "score": 0.5, "segment": [0, 10]}] for v in "xy"
        }
    }
    result = average_recall(*arrays(gt, pred), [0.5], max_average_number=2)
    np.testing.assert_allclose(result.average_number[[49, 99]], [1, 2])
    assert result.at(1) == 0.0 and result.at(2) == 1.0
    assert result.to_json()["AR@1"] == 0.0 and "AR@5" not in result.to_json()
    with pytest.raises(ValueError, match="outside the curve"):
        result.at(5)
    empty = average_recall(*arrays(gt, {"results": {}}), [0.5])
    assert empty.auc == 0.0 and not empty.recall.any()


def test_protocol_thresholds():
    assert thresholds_for(None, None) == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert thresholds_for("multithumos", None) == pytest.approx(np.arange(1, 10) / 10)
    assert thresholds_for("epic", None) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert thresholds_for("anet", None) == list(np.linspace(0.5, 0.95, 10))  # exactly ActivityNet's values
    assert PROTOCOLS["hacs"] == PROTOCOLS["anet"] and PROTOCOLS["anet"].reported == (0.5, 0.75, 0.95)
    assert thresholds_for("anet", [0.5]) == [0.5]


def test_table_shows_the_reported_columns_and_averages_all():
    gt, pred = random_case(np.random.default_rng(3))
    result = evaluate_map(gt, pred, "test", PROTOCOLS["anet"].thresholds)
    head, row = result.format_table(PROTOCOLS["anet"].reported).splitlines()[:2]
    assert head.split("|")[1:] == [" 0.50 ", " 0.75 ", " 0.95 ", "  Avg"]
    assert row.split("|")[-1].strip() == f"{100 * result.average_mAP:.2f}"
    assert set(result.to_json()["mAP"]) == {f"{t:.2f}" for t in np.linspace(0.5, 0.95, 10)}


# ------------------------------------------------------------------------------------------------ EPIC
def test_epic_action_needs_verb_and_noun():
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "annotations": [
                    {"label": "take,cup", "segment": [0, 10]},
                    {"label": "open, door", "segment": [20, 30]},
                ],
            }
        }
    }
    pred = {
        "results": {
            "v": [
                {"label": "take,plate", "score": 0.9, "segment": [0, 10]},  # right verb, wrong noun
                {"label": "open,door", "score": 0.8, "segment": [20, 30]},
            ]
        }
    }
    out = evaluate_epic(gt, "test", [0.5], pred)
    assert out["verb"].class_names == ["open", "take"] and out["noun"].class_names == ["cup", "door"]
    np.testing.assert_allclose(out["verb"].ap, [[1.0, 1.0]])
    np.testing.assert_allclose(out["noun"].ap, [[0.0, 1.0]])
    np.testing.assert_allclose(out["action"].ap, [[1.0, 0.0]])  # classes "open,door", "take,cup"
    # A verb-only model replaces the verb part; without action predictions there is no action table.
    verbs = {"results": {"v": [{"label": "take", "score": 0.5, "segment": [0, 10]}]}}
    out = evaluate_epic(gt, "test", [0.5], verbs=verbs)
    assert list(out) == ["verb"] and out["verb"].mAP[0] == 0.5


@pytest.mark.parametrize("label", ["take", "a,b,c", ",cup", 3])
def test_epic_labels_must_be_verb_comma_noun(label):
    with pytest.raises(DataError, match="is not 'verb,noun'"):
        split_label(label, "x")
    gt = {"database": {"vid7": {"subset": "test", "annotations": [{"label": label, "segment": [0, 1]}]}}}
    with pytest.raises(DataError, match="video 'vid7', annotation 0"):
        evaluate_epic(gt, "test", [0.5], {"results": {}})


# --------------------------------------------------------------------------------------------- presets
def test_test_config_preset_and_explicit_keys():
    cfg = TestConfig()
    assert cfg.postprocess_overrides() == {}
    assert set(cfg.model_dump()) == {"preset", "window", "window_overlap", "tiou_thresholds", "amp"}
    cfg = TestConfig.model_validate(
        {"preset": "deployment", "max_detections": 50, "voting_iou": None, "nms_sigma": None}
    )
    # null means "off" for voting and the per-class limit, and "the preset's value" elsewhere
    assert cfg.postprocess_overrides() == {"max_detections": 50, "voting_iou": None}
    again = TestConfig.model_validate(cfg.model_dump(mode="json"))  # a saved run keeps what was set, only
    assert again.postprocess_overrides() == cfg.postprocess_overrides()
    opts = PostprocessOptions.preset(cfg.preset, **cfg.postprocess_overrides())
    assert opts.max_detections == 50 and opts.score_threshold == PRESETS["deployment"]["score_threshold"]
    assert PostprocessOptions.preset("benchmark") == PostprocessOptions()
    with pytest.raises(ValueError, match="unknown post-processing preset"):
        PostprocessOptions.preset("fast")


def test_max_per_class_keeps_each_class_best():
    import torch

    # 3 far-apart steps per class: nothing suppresses anything; class 0 scores higher than class 1.
    probs = torch.tensor([[0.9, 0.3], [0.8, 0.2], [0.7, 0.25]])
    segs = torch.tensor([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    det = postprocess_video([probs], [segs], PostprocessOptions(max_per_class=2, voting_iou=None))
    assert det.labels.tolist() == [0, 0, 1, 1]
    assert det.scores.tolist() == pytest.approx([0.9, 0.8, 0.3, 0.25])
    det = postprocess_video([probs], [segs], PostprocessOptions(max_per_class=2, max_detections=3))
    assert det.scores.tolist() == pytest.approx([0.9, 0.8, 0.3])
