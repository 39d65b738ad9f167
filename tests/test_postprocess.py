"""Candidate selection, the whole post-processing of a video, and the conversion to ActivityNet results."""

import dataclasses
import json
import math

import pytest
import torch

from cltdr.data.grid import FeatureGrid
from cltdr.inference import Detections, PostprocessOptions, postprocess_video, select_candidates, to_results


def level(probs, segments):
    return torch.tensor(probs, dtype=torch.float32), torch.tensor(segments, dtype=torch.float32)


def as_set(det):
    return {
        (label, round(score, 6), tuple(seg))
        for seg, score, label in zip(det.segments.tolist(), det.scores.tolist(), det.labels.tolist())
    }


def test_threshold_is_strict_and_multi_label():
    # step 0: classes 0 and 2 above the threshold (one step, two candidates); step 1: exactly at it
    probs, segs = level([[0.5, 0.001, 0.3], [0.001, 0.0, 0.0]], [[0.0, 2.0], [1.0, 3.0]])
    det = select_candidates([probs], [segs], PostprocessOptions(score_threshold=0.001))
    assert isinstance(det, Detections) and len(det) == 2
    assert det.labels.dtype == torch.long
    assert as_set(det) == {(0, 0.5, (0.0, 2.0)), (2, 0.3, (0.0, 2.0))}


def test_topk_is_per_level():
    probs_a = torch.arange(30, dtype=torch.float32).reshape(10, 3) / 100 + 0.01  # 0.01 .. 0.30
    segs_a = torch.stack([torch.arange(10.0), torch.arange(10.0) + 1], dim=1)
    probs_b, segs_b = level([[0.02, 0.0, 0.0]], [[100.0, 104.0]])  # far below level a's best, still kept
    det = select_candidates([probs_a, probs_b], [segs_a, segs_b], PostprocessOptions(pre_nms_topk=4))
    assert len(det) == 5
    assert det.scores.tolist() == pytest.approx([0.30, 0.29, 0.28, 0.27, 0.02])
    # flat index 29 = step 9, class 2; 28 = step 9, class 1; 27 = step 9, class 0; 26 = step 8, class 2
    assert det.labels.tolist() == [2, 1, 0, 2, 0]
    assert det.segments.tolist() == [[9.0, 10.0]] * 3 + [[8.0, 9.0], [100.0, 104.0]]


def test_min_segment_length():
    probs, segs = level([[0.9], [0.8], [0.7], [0.6]], [[0.0, 0.125], [1.0, 1.25], [2.0, 2.0], [3.0, 4.0]])
    det = select_candidates([probs], [segs], PostprocessOptions(min_segment_length=0.25))  # 0.25 itself stays
    assert det.scores.tolist() == pytest.approx([0.8, 0.6])
    det = select_candidates([probs], [segs], PostprocessOptions())  # 0.05 by default
    assert det.scores.tolist() == pytest.approx([0.9, 0.8, 0.6])
    det = select_candidates([probs], [segs], PostprocessOptions(min_segment_length=0.0))
    assert len(det) == 4


def test_no_candidates():
    probs, segs = level([[0.0, 0.0]], [[0.0, 1.0]])
    empty_p, empty_s = torch.zeros(0, 2), torch.zeros(0, 2)
    det = postprocess_video([probs, empty_p], [segs, empty_s], PostprocessOptions())
    assert det.segments.shape == (0, 2) and det.scores.shape == (0,) and det.labels.shape == (0,)
    assert to_results(det, FeatureGrid(30, 4, 16), 10.0, ["a", "b"]) == []


def test_postprocess_video_end_to_end():
    """Two levels; class 0 has two overlapping candidates (IoU 0.5), class 1 one that sits on the first."""
    probs_a, segs_a = level([[0.9, 0.0], [0.8, 0.0]], [[0.0, 3.0], [1.0, 4.0]])
    probs_b, segs_b = level([[0.0, 0.7]], [[0.0, 3.0]])
    opts = PostprocessOptions(voting_iou=None)
    det = postprocess_video([probs_a, probs_b], [segs_a, segs_b], opts)
    assert det.labels.tolist() == [0, 1, 0]
    assert det.scores.tolist() == pytest.approx([0.9, 0.7, 0.8 * math.exp(-0.25 / 0.5)])
    det = postprocess_video([probs_a, probs_b], [segs_a, segs_b], dataclasses.replace(opts, class_agnostic_nms=True))
    # class 1's [0, 3] now decays under [0, 3] (IoU 1) and then under [1, 4] (IoU 0.5)
    assert det.scores.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5), 0.7 * math.exp(-2.0) * math.exp(-0.5)])
    det = postprocess_video([probs_a, probs_b], [segs_a, segs_b], dataclasses.replace(opts, max_detections=1))
    assert len(det) == 1


def test_to_results_seconds_by_hand():
    """fps 30, stride 4, 16 frames: seconds = (grid * 4 + 8) / 30."""
    grid = FeatureGrid(fps=30.0, feat_stride=4, num_frames=16)
    det = Detections(
        segments=torch.tensor([[1.0, 7.0], [5.5, 20.0], [-5.0, -2.0], [10.0, 12.0], [-4.0, 1.0]]),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]),
        labels=torch.tensor([1, 0, 0, 1, 0]),
    )
    results = to_results(det, grid, duration=1.5, class_names=["Jump", "Run"])
    # [1, 7] -> [0.4, 1.2]; [5.5, 20] -> [1.0, 2.93] clipped to 1.5; [-5, -2] -> [-0.4, 0] collapses to [0, 0];
    # [10, 12] -> [1.6, 1.87] collapses to [1.5, 1.5]; [-4, 1] -> [-0.27, 0.4] clipped to [0, 0.4]
    assert [r["label"] for r in results] == ["Run", "Jump", "Jump"]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.8, 0.5])
    expected = [[12 / 30, 36 / 30], [30 / 30, 1.5], [0.0, 12 / 30]]
    for result, segment in zip(results, expected):
        assert result["segment"] == pytest.approx(segment, abs=1e-9)
        assert type(result["score"]) is float and all(type(x) is float for x in result["segment"])
    assert json.loads(json.dumps(results)) == results


def test_to_results_rejects_unknown_labels():
    det = Detections(torch.tensor([[0.0, 1.0]]), torch.tensor([0.5]), torch.tensor([3]))
    with pytest.raises(ValueError, match="label 3"):
        to_results(det, FeatureGrid(30, 4, 16), 10.0, ["a", "b"])


def test_options_are_validated_and_frozen():
    with pytest.raises(ValueError, match="pre_nms_topk.*0"):
        PostprocessOptions(pre_nms_topk=0)
    with pytest.raises(ValueError, match="voting_iou"):
        PostprocessOptions(voting_iou=1.5)
    with pytest.raises(ValueError, match="nms_sigma"):
        PostprocessOptions(nms_sigma=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PostprocessOptions().nms_sigma = 1.0  # type: ignore[misc]


def test_mismatched_levels_name_the_shapes():
    probs, segs = level([[0.5, 0.5]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="levels"):
        select_candidates([probs, probs], [segs], PostprocessOptions())
    with pytest.raises(ValueError, match=r"level 0.*\(1, 2\).*\(2, 2\)"):
        select_candidates([probs], [torch.zeros(2, 2)], PostprocessOptions())


def test_class_wise_segments_take_the_segment_of_their_class():
    """A Trident head gives every (step, class) its own boundaries: (T, K, 2) segments."""
    scores = [torch.tensor([[0.9, 0.8], [0.0, 0.0]])]
    segments = [torch.tensor([[[0.0, 4.0], [10.0, 20.0]], [[0.0, 1.0], [0.0, 1.0]]])]
    det = select_candidates(scores, segments, PostprocessOptions())
    assert det.labels.tolist() == [0, 1]
    assert det.segments.tolist() == [[0.0, 4.0], [10.0, 20.0]]
