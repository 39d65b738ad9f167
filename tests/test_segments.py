"""segment_iou / aligned_segment_iou against a plain-Python reference and hand-computed cases."""

import random

import pytest
import torch

from cltdr.ops import aligned_segment_iou, segment_iou


def ref_iou(a, b):
    """Textbook tIoU of two [start, end] pairs; an empty (or inverted) segment has IoU 0 with anything."""
    la, lb = max(a[1] - a[0], 0.0), max(b[1] - b[0], 0.0)
    inter = max(min(a[1], b[1]) - max(a[0], b[0]), 0.0)
    union = (la + lb) - inter
    return inter / union if union > 0 else 0.0


def random_segments(rng, n, *, quantized=False):
    """Random segments with duplicates, zero-length and touching ones mixed in."""
    out = []
    for _ in range(n):
        kind = rng.random()
        if out and kind < 0.15:
            out.append(list(rng.choice(out)))  # duplicate
        elif kind < 0.3:
            t = float(rng.randint(0, 20)) if quantized else rng.uniform(0, 20)
            out.append([t, t])  # zero length
        else:
            s = float(rng.randint(0, 20)) if quantized else rng.uniform(0, 20)
            length = float(rng.randint(1, 8)) if quantized else rng.uniform(0.01, 8)
            out.append([s, s + length])
    return out


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0.0, 2.0], [1.0, 3.0], 1 / 3),
        ([0.0, 2.0], [1.0, 2.0], 0.5),
        ([0.0, 3.0], [1.0, 4.0], 0.5),
        ([0.0, 4.0], [1.0, 2.0], 0.25),
        ([0.0, 2.0], [0.0, 2.0], 1.0),
        ([0.0, 1.0], [1.0, 2.0], 0.0),  # touching
        ([0.0, 1.0], [5.0, 6.0], 0.0),  # disjoint
        ([1.0, 1.0], [0.0, 2.0], 0.0),  # zero length inside another
        ([1.0, 1.0], [1.0, 1.0], 0.0),  # both zero length: 0, not NaN
        ([2.0, 1.0], [0.0, 3.0], 0.0),  # inverted counts as empty
    ],
)
def test_hand_computed(a, b, expected):
    got = segment_iou(torch.tensor([a]), torch.tensor([b]))
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(expected, abs=1e-7)
    assert aligned_segment_iou(torch.tensor([a]), torch.tensor([b])).item() == pytest.approx(expected, abs=1e-7)
    assert segment_iou(torch.tensor([b]), torch.tensor([a])).item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("quantized", [False, True])
def test_pairwise_matches_reference(seed, quantized):
    rng = random.Random(seed)
    a = random_segments(rng, rng.randint(1, 40), quantized=quantized)
    b = random_segments(rng, rng.randint(1, 40), quantized=quantized)
    got = segment_iou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    expected = torch.tensor([[ref_iou(x, y) for y in b] for x in a], dtype=torch.float64)
    assert got.shape == (len(a), len(b))
    assert not got.isnan().any()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    got32 = segment_iou(torch.tensor(a), torch.tensor(b))
    torch.testing.assert_close(got32, expected.float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_aligned_is_the_diagonal(seed):
    rng = random.Random(100 + seed)
    a = torch.tensor(random_segments(rng, 30), dtype=torch.float64)
    b = torch.tensor(random_segments(rng, 30), dtype=torch.float64)
    got = aligned_segment_iou(a, b)
    assert got.shape == (30,)
    torch.testing.assert_close(got, segment_iou(a, b).diagonal(), rtol=0, atol=0)
    expected = torch.tensor([ref_iou(x, y) for x, y in zip(a.tolist(), b.tolist())], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_empty_inputs():
    none, some = torch.zeros(0, 2), torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert segment_iou(none, some).shape == (0, 2)
    assert segment_iou(some, none).shape == (2, 0)
    assert aligned_segment_iou(none, none).shape == (0,)


def test_gradient_is_finite_for_empty_segments():
    a = torch.tensor([[1.0, 1.0], [0.0, 2.0], [3.0, 3.0]], requires_grad=True)
    b = torch.tensor([[1.0, 1.0], [1.0, 3.0], [0.0, 1.0]], requires_grad=True)
    aligned_segment_iou(a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad.abs().sum() > 0  # the middle pair overlaps, so it has a gradient


def test_bad_shapes_name_the_shape():
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        segment_iou(torch.zeros(3, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"as many rows"):
        aligned_segment_iou(torch.zeros(3, 2), torch.zeros(2, 2))


def test_every_iou_in_cltdr_is_the_one_core():
    """Pairwise IoU, the distance-form IoU of the losses and Soft-NMS's decay all agree with the reference,
    empty and inverted segments included (they share inter_union / iou_of)."""
    from cltdr.model.losses import distance_iou

    rng = random.Random(3)
    segs = random_segments(rng, 40) + [[3.0, 1.0]]
    a, b = torch.tensor(segs), torch.tensor(segs[::-1])
    expected = torch.tensor([ref_iou(x, y) for x, y in zip(segs, segs[::-1])])
    torch.testing.assert_close(aligned_segment_iou(a, b), expected)
    # The same segments as distances from a point t inside the frame: [t - s, e - t].
    t = 10.0
    torch.testing.assert_close(
        distance_iou(torch.stack([t - a[:, 0], a[:, 1] - t], -1), torch.stack([t - b[:, 0], b[:, 1] - t], -1)), expected
    )


def test_segment_coder_round_trip_and_formula():
    from cltdr.model.outputs import distances_to_segments, segments_to_distances

    position, stride = torch.tensor([8.0, 8.0]), torch.tensor([4.0, 2.0])
    segments = torch.tensor([[2.0, 20.0], [8.0, 9.0]])
    d = segments_to_distances(position, stride, segments)
    torch.testing.assert_close(d, torch.tensor([[6 / 4, 12 / 4], [0.0, 1 / 2]]))  # ((t - s) / stride, (e - t) / stride)
    torch.testing.assert_close(distances_to_segments(position, stride, d), segments)
