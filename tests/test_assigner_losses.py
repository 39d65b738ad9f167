"""Label assignment and the losses of eq. 13, each against a slow reference written here."""

from __future__ import annotations

import math

import pytest
import torch

from cltdr.config import LossConfig
from cltdr.model.assigner import assign
from cltdr.model.detector import Detector
from cltdr.model.losses import distance_iou, iou_loss, varifocal_loss
from cltdr.model.outputs import make_points

RANGES = [(0, 4), (4, 8), (8, 16), (16, math.inf)]


def slow_assign(points, segments, labels, K, radius, multi_label):
    P = len(points.position)
    cls = torch.zeros(P, K)
    reg = torch.zeros(P, K, 2)
    for i in range(P):
        x, s = float(points.position[i]), float(points.stride[i])
        cands = []  # (length, file index, start, end, class) of the qualifying actions
        for n, ((st, en), c) in enumerate(zip(segments.tolist(), labels.tolist())):
            mid = (st + en) / 2
            lo, hi = max(mid - radius * s, st), min(mid + radius * s, en)
            if not (x - lo > 0 and hi - x > 0):
                continue
            far = max(x - st, en - x)
            if not (points.reg_min[i] <= far <= points.reg_max[i]):
                continue
            cands.append((en - st, n, st, en, c))
        if not multi_label and cands:
            shortest = min(c[0] for c in cands)
            cands = [c for c in cands if c[0] <= shortest + 1e-3]
        for c in range(K):
            mine = sorted(x_ for x_ in cands if x_[4] == c)  # shortest first, then file order
            if mine:
                _, _, st, en, _ = mine[0]
                cls[i, c] = 1
                reg[i, c] = torch.tensor([(x - st) / s, (en - x) / s])
    return cls, reg


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_assign_matches_slow_reference(seed, multi_label):
    g = torch.Generator().manual_seed(seed)
    points = make_points([64, 32, 16, 8], RANGES)
    N = int(torch.randint(0, 10, (1,), generator=g))
    start = torch.rand(N, generator=g) * 60
    length = torch.rand(N, generator=g) ** 2 * 40 + 0.5
    segments = torch.stack([start, (start + length).clamp(max=64)], 1)
    if N > 2:  # the same segment under two labels, as dense multi-label datasets have
        segments[1] = segments[0] + 0.0
    labels = torch.randint(0, 5, (N,), generator=g)
    t = assign(points, segments, labels, 5, 1.5, multi_label)
    cls, reg = slow_assign(points, segments, labels, 5, 1.5, multi_label)
    torch.testing.assert_close(t.cls, cls)
    torch.testing.assert_close(t.reg, reg)


def test_multi_label_point_is_positive_for_overlapping_classes():
    points = make_points([16], [(0, math.inf)])
    segments = torch.tensor([[2.0, 12.0], [4.0, 9.0]])  # a long action of class 0 containing one of class 1
    labels = torch.tensor([0, 1])
    single = assign(points, segments, labels, 2, center_radius=10.0)
    multi = assign(points, segments, labels, 2, center_radius=10.0, multi_label=True)
    assert single.cls[6].tolist() == [0, 1]  # the shortest action wins
    assert multi.cls[6].tolist() == [1, 1]  # both classes, each regressing its own action
    assert multi.reg[6].tolist() == [[4.0, 6.0], [2.0, 3.0]]


def test_points_layout():
    p = make_points([8, 4, 2], [(0, 4), (4, 8), (8, math.inf)])
    assert p.position.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6, 0, 4]
    assert p.stride.tolist() == [1] * 8 + [2] * 4 + [4] * 2
    assert p.reg_max[-1] == math.inf


def test_assign_without_actions():
    t = assign(make_points([8], [(0, math.inf)]), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 3)
    assert t.cls.sum() == 0 and t.reg.abs().sum() == 0 and not t.positive.any()


# ------------------------------------------------------------------------------------------------- losses
def test_varifocal_against_formula():
    p = torch.tensor([0.1, 0.6, 0.3, 0.9])
    q = torch.tensor([0.0, 0.0, 0.7, 1.0])
    a, g = 0.75, 2.0
    ref = [
        -a * 0.1**2 * math.log(0.9),
        -a * 0.6**2 * math.log(0.4),
        -0.7 * (0.7 * math.log(0.3) + 0.3 * math.log(0.7)),
        -1.0 * math.log(0.9),
    ]
    torch.testing.assert_close(varifocal_loss(p.log(), q, a, g), torch.tensor(ref))


def _slow_iou(p, t):
    ps, pe, ts, te = -p[0], p[1], -t[0], t[1]
    inter = max(0.0, min(pe, te) - max(ps, ts))
    union = max(pe - ps, 0.0) + (te - ts) - inter
    enclose = max(pe, te) - min(ps, ts)
    c = ((ps + pe) - (ts + te)) / 2
    return inter / union, enclose, union, c


def test_iou_losses_against_formulas():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(30, 2, generator=g) * 5 - 0.5  # some negative distances (after refinement)
    tgt = torch.rand(30, 2, generator=g) * 5 + 0.1
    for kind in ("iou", "giou", "diou"):
        out = iou_loss(pred, tgt, kind)
        for i in range(30):
            iou, enclose, union, c = _slow_iou(pred[i].tolist(), tgt[i].tolist())
            ref = {"iou": 1 - iou, "giou": 1 - iou + (enclose - union) / enclose, "diou": 1 - iou + (c / enclose) ** 2}[
                kind
            ]
            assert abs(float(out[i]) - ref) < 1e-5, (kind, i)
    torch.testing.assert_close(distance_iou(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0])), torch.tensor(0.5))


def _toy_detector(normalizer):
    det = Detector(
        encoder=torch.nn.Identity(),
        decoder=torch.nn.Identity(),
        num_classes=2,
        level_ranges=[(0, math.inf)],
        loss=LossConfig(normalizer=normalizer, normalizer_init=4.0),
    )
    return det


def test_eq13_paper_normaliser():
    """Eq. 13 literally: sum over positives of (IoU * VFL + L_IoU) / N_pos + sum over negatives of VFL / N_neg."""
    from cltdr.model.assigner import Targets

    det = _toy_detector("paper")
    P, K = 5, 2
    log_p = torch.log(torch.rand(1, P, K) * 0.9 + 0.05)
    dist = torch.rand(1, P, K, 2) * 3 + 0.1
    cls = torch.zeros(1, P, K)
    cls[0, 1, 0] = cls[0, 3, 1] = 1
    reg = torch.zeros(1, P, K, 2)
    reg[0, 1, 0] = torch.tensor([1.0, 2.0])
    reg[0, 3, 1] = torch.tensor([0.5, 0.5])
    label = [-1, 0, -1, 1, -1]
    tgt = Targets(cls, reg)
    valid = torch.tensor([[True, True, True, True, False]])
    out = det._loss_terms(log_p, dist, tgt, valid, det.loss_normalizer)

    def step_vfl(t):
        q = torch.zeros(K)
        if label[t] >= 0:
            q[label[t]] = float(distance_iou(dist[0, t, label[t]], reg[0, t, label[t]]))
        return float(varifocal_loss(log_p[0, t], q).sum())

    cls_ref, reg_ref = 0.0, 0.0
    for t in range(4):
        if label[t] >= 0:
            c = label[t]
            sigma = float(distance_iou(dist[0, t, c], reg[0, t, c]))
            cls_ref += sigma * step_vfl(t) / 2
            reg_ref += float(iou_loss(dist[0, t, c], reg[0, t, c], "diou")) / 2
        else:
            cls_ref += step_vfl(t) / 2  # two valid negatives (the fifth point is padding)
    assert abs(float(out["cls_loss"]) - cls_ref) < 1e-5
    assert abs(float(out["reg_loss"]) - reg_ref) < 1e-5

    det = _toy_detector("positives")
    out = det._loss_terms(log_p, dist, tgt, valid, det.loss_normalizer)
    total_vfl = sum(step_vfl(t) for t in range(4))
    assert abs(float(out["cls_loss"]) - total_vfl / 4.0) < 1e-5  # over the running normaliser (init 4)
    assert abs(float(out["reg_loss"]) - 2 * reg_ref / 4.0) < 1e-5


def test_loss_normaliser_starts_from_the_first_batch():
    """Unset (no normalizer_init), the first training batch's positive count is the normaliser; then the EMA
    m * running + (1 - m) * max(count, 1) follows, and an explicit initial value is kept as the start."""
    from cltdr.model.detector import update_normalizer

    unset = torch.tensor(0.0)
    assert float(update_normalizer(unset, torch.tensor(17), 0.9)) == 17.0
    assert float(update_normalizer(unset, torch.tensor(0), 0.9)) == 1.0  # never 0
    assert abs(float(update_normalizer(torch.tensor(17.0), torch.tensor(27), 0.9)) - (0.9 * 17 + 0.1 * 27)) < 1e-5
    assert abs(float(update_normalizer(torch.tensor(100.0), torch.tensor(0), 0.9)) - (90 + 0.1)) < 1e-5

    det = Detector(
        encoder=torch.nn.Identity(),
        decoder=torch.nn.Identity(),
        num_classes=2,
        level_ranges=[(0, math.inf)],
        loss=LossConfig(),
    )
    assert float(det.loss_normalizer) == 0.0  # unset until the first training batch


def test_binary_classification_target_weighted_by_iou():
    """cls_target 'binary': a positive pair's VFL target is 1, its loss weighted by tIoU^power (detached);
    negatives are as with the IoU target."""
    from cltdr.model.assigner import Targets

    det = Detector(
        encoder=torch.nn.Identity(),
        decoder=torch.nn.Identity(),
        num_classes=2,
        level_ranges=[(0, math.inf)],
        loss=LossConfig(cls_target="binary", iou_weight_power=0.2, normalizer_init=4.0),
    )
    P, K = 4, 2
    torch.manual_seed(0)
    log_p = torch.log(torch.rand(1, P, K) * 0.9 + 0.05)
    dist = torch.rand(1, P, K, 2) * 3 + 0.1
    cls = torch.zeros(1, P, K)
    cls[0, 1, 0] = 1
    reg = torch.zeros(1, P, K, 2)
    reg[0, 1, 0] = torch.tensor([1.0, 2.0])
    valid = torch.ones(1, P, dtype=torch.bool)
    out = det._loss_terms(log_p, dist, Targets(cls, reg), valid, det.loss_normalizer)
    ref = 0.0
    for t in range(P):
        for k in range(K):
            p = float(log_p[0, t, k].exp())
            if cls[0, t, k] > 0:
                iou = float(distance_iou(dist[0, t, k], reg[0, t, k]))
                ref += -math.log(p) * iou**0.2
            else:
                ref += -0.75 * p**2 * math.log(1 - p)
    assert abs(float(out["cls_loss"]) - ref / 4.0) < 1e-5
    dist.requires_grad_()
    again = det._loss_terms(log_p, dist, Targets(cls, reg), valid, det.loss_normalizer)
    assert not again["cls_loss"].requires_grad  # the IoU weight is detached: no gradient reaches the distances


def test_coarse_classification_focal_loss():
    """loss.coarse_cls 'focal': the coarse term is alpha_t (1 - p_t)^gamma BCE against the binary labels over
    valid points, whatever the predicted boundaries; the refined term keeps the varifocal loss."""
    from cltdr.model.assigner import Targets

    det = Detector(
        encoder=torch.nn.Identity(),
        decoder=torch.nn.Identity(),
        num_classes=2,
        level_ranges=[(0, math.inf)],
        loss=LossConfig(coarse_cls="focal", focal_alpha=0.25, focal_gamma=2.0, normalizer_init=4.0),
    )
    P, K = 5, 2
    torch.manual_seed(1)
    logits = torch.randn(1, P, K) * 2
    dist = torch.rand(1, P, K, 2) * 3 + 0.1
    cls = torch.zeros(1, P, K)
    cls[0, 1, 0] = cls[0, 3, 1] = 1
    reg = torch.zeros(1, P, K, 2)
    reg[0, 1, 0] = torch.tensor([1.0, 2.0])
    reg[0, 3, 1] = torch.tensor([0.5, 0.5])
    valid = torch.tensor([[True, True, True, True, False]])
    tgt = Targets(cls, reg)
    out = det._loss_terms(torch.nn.functional.logsigmoid(logits), dist, tgt, valid, det.loss_normalizer, logits)
    ref = 0.0
    for t in range(4):
        for k in range(K):
            p = 1 / (1 + math.exp(-float(logits[0, t, k])))
            if cls[0, t, k] > 0:
                ref += -0.25 * (1 - p) ** 2 * math.log(p)
            else:
                ref += -0.75 * p**2 * math.log(1 - p)
    assert abs(float(out["cls_loss"]) - ref / 4.0) < 1e-5
    assert abs(float(out["reg_loss"]) - float(iou_loss(dist[cls > 0], reg[cls > 0]).sum()) / 4.0) < 1e-5
    # the boundaries do not change the focal term
    moved = det._loss_terms(torch.nn.functional.logsigmoid(logits), dist * 2, tgt, valid, det.loss_normalizer, logits)
    assert float(moved["cls_loss"]) == float(out["cls_loss"])
