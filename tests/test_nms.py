"""Soft-NMS and score voting against the textbook per-class sequential loop, plus hand-computed cases."""

import math
import random

import pytest
import torch

from cltdr.ops import soft_nms


def ref_iou(a, b):
    la, lb = max(a[1] - a[0], 0.0), max(b[1] - b[0], 0.0)
    inter = max(min(a[1], b[1]) - max(a[0], b[0]), 0.0)
    union = (la + lb) - inter
    return inter / union if union > 0 else 0.0


def ref_soft_nms(segs, scores, labels, *, sigma, min_score, max_detections, voting_iou, class_agnostic):
    """The textbook loop, one class at a time, one candidate at a time."""
    groups = [0 if class_agnostic else label for label in labels]
    kept = []  # (input index, decayed score)
    for group in sorted(set(groups)):
        remaining = {i: scores[i] for i in range(len(segs)) if groups[i] == group and scores[i] >= min_score}
        while remaining:
            best = max(remaining, key=lambda i: (remaining[i], -i))  # highest score, ties: first in the input
            kept.append((best, remaining.pop(best)))
            for j in list(remaining):
                remaining[j] *= math.exp(-(ref_iou(segs[best], segs[j]) ** 2) / sigma)
                if remaining[j] < min_score:
                    del remaining[j]
    kept.sort(key=lambda pair: (-pair[1], pair[0]))
    out = []
    for i, score in kept[:max_detections]:
        seg = segs[i]
        if voting_iou is not None:
            seg = ref_vote(seg, groups[i], segs, scores, groups, voting_iou)
        out.append((seg, score, labels[i]))
    return out


def ref_vote(seg, group, segs, scores, groups, voting_iou):
    total, start, end = 0.0, 0.0, 0.0
    for other, score, g in zip(segs, scores, groups):
        iou = ref_iou(seg, other)
        if g == group and iou >= voting_iou:
            total += score * iou
            start += score * iou * other[0]
            end += score * iou * other[1]
    return [start / total, end / total] if total > 0 else list(seg)


def random_case(rng, n, num_classes, *, ties):
    """Clustered segments (so that Soft-NMS has work to do) with duplicates, zero-length ones and ties."""
    centres = [rng.uniform(0, 50) for _ in range(max(1, n // 6))]
    segs, scores, labels = [], [], []
    for _ in range(n):
        kind = rng.random()
        if segs and kind < 0.1:
            k = rng.randrange(len(segs))  # exact duplicate, same class and score
            segs.append(list(segs[k]))
            scores.append(scores[k])
            labels.append(labels[k])
            continue
        c = rng.choice(centres)
        if ties:  # integer grid and a few score levels: exact ties everywhere
            s = float(round(c) + rng.randint(-3, 3))
            e = s + float(rng.choice([0, 1, 2, 3, 4, 6]))
            score = rng.choice([0.2, 0.5, 0.8, 0.9])
        else:
            s = c + rng.gauss(0, 1.5)
            e = s + (0.0 if kind < 0.15 else rng.uniform(0.5, 6))
            score = rng.uniform(0.0, 1.0)
        segs.append([s, e])
        scores.append(score)
        labels.append(rng.randrange(num_classes))
    return segs, scores, labels


def run(segs, scores, labels, dtype=torch.float64, **kw):
    out_seg, out_score, out_label = soft_nms(
        torch.tensor(segs, dtype=dtype).reshape(-1, 2),
        torch.tensor(scores, dtype=dtype),
        torch.tensor(labels, dtype=torch.long),
        **kw,
    )
    assert out_seg.shape == (out_score.shape[0], 2) and out_label.shape == out_score.shape
    assert out_label.dtype == torch.long and out_seg.dtype == dtype and out_score.dtype == dtype
    return out_seg, out_score, out_label


def assert_matches_reference(segs, scores, labels, dtype=torch.float64, tol=1e-9, **kw):
    expected = ref_soft_nms(segs, scores, labels, **kw)
    got_seg, got_score, got_label = run(segs, scores, labels, dtype=dtype, **kw)
    assert got_label.tolist() == [label for _, _, label in expected]
    torch.testing.assert_close(
        got_score, torch.tensor([s for _, s, _ in expected], dtype=dtype), rtol=0, atol=tol, check_dtype=False
    )
    torch.testing.assert_close(
        got_seg, torch.tensor([seg for seg, _, _ in expected], dtype=dtype).reshape(-1, 2), rtol=0, atol=tol * 10
    )
    assert (got_score[:-1] >= got_score[1:]).all()


DEFAULTS = dict(sigma=0.5, min_score=1e-3, max_detections=2000, voting_iou=None, class_agnostic=False)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("num_classes", [1, 3, 12])
def test_random_matches_reference(seed, ties, num_classes):
    rng = random.Random(seed * 1000 + num_classes * 10 + ties)
    n = rng.choice([1, 2, 7, 30, 80])
    segs, scores, labels = random_case(rng, n, num_classes, ties=ties)
    kw = dict(
        sigma=rng.choice([0.5, 0.1, 2.0]),
        min_score=rng.choice([1e-3, 0.05, 0.0]),
        max_detections=rng.choice([2000, 5, 1]),
        voting_iou=rng.choice([None, 0.7, 0.3, 0.0, 1.0]),
        class_agnostic=rng.random() < 0.25,
    )
    assert_matches_reference(segs, scores, labels, **kw)


@pytest.mark.parametrize("seed", range(4))
def test_float32_matches_reference(seed):
    rng = random.Random(77 + seed)
    segs, scores, labels = random_case(rng, 60, 4, ties=False)
    assert_matches_reference(segs, scores, labels, dtype=torch.float32, tol=1e-5, **{**DEFAULTS, "voting_iou": 0.7})


@pytest.mark.parametrize("max_detections", [2000, 40, 3])
def test_many_rounds_and_pruning_match_reference(max_detections):
    """One crowded class (hundreds of rounds, the table is compacted) beside small ones; a small
    max_detections exercises the exact early pruning."""
    rng = random.Random(5)
    segs, scores, labels = random_case(rng, 300, 1, ties=False)
    more = random_case(rng, 60, 5, ties=False)
    segs, scores, labels = segs + more[0], scores + more[1], labels + [label + 1 for label in more[2]]
    assert_matches_reference(segs, scores, labels, **{**DEFAULTS, "max_detections": max_detections, "sigma": 2.0})
    kw = {**DEFAULTS, "max_detections": max_detections, "voting_iou": 0.7, "min_score": 0.0}
    assert_matches_reference(segs, scores, labels, **kw)


def test_many_classes_matches_reference():
    rng = random.Random(9)
    segs, scores, labels = random_case(rng, 200, 150, ties=False)
    assert_matches_reference(segs, scores, labels, **{**DEFAULTS, "voting_iou": 0.5})


def test_hand_computed_decay():
    """IoU([0, 3], [1, 4]) = 2 / 4 = 0.5, so the second score decays by exp(-0.25 / sigma)."""
    for sigma in (0.5, 0.2):
        seg, score, label = run([[0.0, 3.0], [1.0, 4.0]], [0.9, 0.8], [0, 0], **{**DEFAULTS, "sigma": sigma})
        assert score.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.25 / sigma)], abs=1e-12)
        assert seg.tolist() == [[0.0, 3.0], [1.0, 4.0]] and label.tolist() == [0, 0]


def test_hand_computed_voting():
    """Weights score x IoU: for [0, 3] they are 0.9 x 1 (itself) and 0.8 x 0.5; for [1, 4], 0.8 x 1 and 0.9 x 0.5."""
    seg, score, _ = run([[0.0, 3.0], [1.0, 4.0]], [0.9, 0.8], [0, 0], **{**DEFAULTS, "voting_iou": 0.5})
    assert seg[0].tolist() == pytest.approx([0.4 / 1.3, 4.3 / 1.3], abs=1e-12)
    assert seg[1].tolist() == pytest.approx([0.8 / 1.25, 4.55 / 1.25], abs=1e-12)
    assert score.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5)], abs=1e-12)  # voting keeps scores
    seg, _, _ = run([[0.0, 3.0], [1.0, 4.0]], [0.9, 0.8], [0, 0], **{**DEFAULTS, "voting_iou": 0.51})
    assert seg.tolist() == [[0.0, 3.0], [1.0, 4.0]]  # IoU 0.5 < 0.51: each votes alone


def test_classes_do_not_decay_each_other_unless_agnostic():
    segs, scores, labels = [[0.0, 3.0], [1.0, 4.0]], [0.9, 0.8], [0, 1]
    _, score, label = run(segs, scores, labels, **DEFAULTS)
    assert score.tolist() == pytest.approx([0.9, 0.8]) and label.tolist() == [0, 1]
    _, score, label = run(segs, scores, labels, **{**DEFAULTS, "class_agnostic": True})
    assert score.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5)]) and label.tolist() == [0, 1]


def test_min_score_and_max_detections():
    segs = [[0.0, 2.0], [0.0, 2.0], [5.0, 6.0], [8.0, 9.0]]
    # the duplicate decays to 0.5 * exp(-1 / 0.5) = 0.068 < 0.1: dropped; 0.05 is below min_score from the start
    _, score, _ = run(segs, [0.9, 0.5, 0.3, 0.05], [0, 0, 0, 0], **{**DEFAULTS, "min_score": 0.1})
    assert score.tolist() == pytest.approx([0.9, 0.3])
    _, score, _ = run(segs, [0.9, 0.5, 0.3, 0.05], [0, 0, 0, 0], **{**DEFAULTS, "max_detections": 2})
    assert score.tolist() == pytest.approx([0.9, 0.3])
    _, score, _ = run(segs, [0.9, 0.5, 0.3, 0.05], [0, 0, 0, 0], **{**DEFAULTS, "max_detections": 0})
    assert score.shape == (0,)


def test_zero_length_segments_keep_their_place():
    """A zero-length segment overlaps nothing: it decays nobody and, with voting on, keeps its own segment."""
    segs = [[2.0, 2.0], [2.0, 2.0], [1.0, 3.0]]
    seg, score, _ = run(segs, [0.9, 0.8, 0.7], [0, 0, 0], **{**DEFAULTS, "voting_iou": 0.7})
    assert score.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert seg.flatten().tolist() == pytest.approx([2.0, 2.0, 2.0, 2.0, 1.0, 3.0], abs=1e-12)
    assert not seg.isnan().any()


def test_empty_input():
    for voting_iou in (None, 0.7):
        seg, score, label = run([], [], [], **{**DEFAULTS, "voting_iou": voting_iou})
        assert seg.shape == (0, 2) and score.shape == (0,) and label.shape == (0,)
    seg, score, label = run([[0.0, 1.0]], [1e-4], [0], **DEFAULTS)  # everything below min_score
    assert seg.shape == (0, 2) and score.shape == (0,) and label.shape == (0,)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        soft_nms(torch.zeros(4, 3), torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"scores must have shape \(4,\)"):
        soft_nms(torch.zeros(4, 2), torch.zeros(5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        soft_nms(torch.zeros(4, 2), torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="sigma"):
        soft_nms(torch.zeros(4, 2), torch.zeros(4), torch.zeros(4, dtype=torch.long), sigma=0.0)


def test_score_voting_in_chunks_equals_voting_at_once(monkeypatch):
    """Voting handles a bounded number of (kept, voter) pairs at a time; the result does not depend on it."""
    import cltdr.ops.nms as nms

    g = torch.Generator().manual_seed(1)
    start = torch.rand(5000, generator=g) * 500
    segments = torch.stack([start, start + torch.rand(5000, generator=g) * 80 + 1], 1)
    scores, labels = torch.rand(5000, generator=g), torch.randint(0, 3, (5000,), generator=g)
    at_once = nms.soft_nms(segments, scores, labels, voting_iou=0.7)
    monkeypatch.setattr(nms, "_VOTING_PAIRS", 97)
    chunked = nms.soft_nms(segments, scores, labels, voting_iou=0.7)
    for a, b in zip(at_once, chunked):
        torch.testing.assert_close(a, b)
