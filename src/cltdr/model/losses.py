"""Losses of eq. 13: varifocal loss on classification, IoU-family loss on boundaries; the released code's focal loss.

Shapes: N positives, K classes. Boundaries are distances (to start, to end) from the same point, so a
segment is [-d_start, d_end]; distances may be negative after refinement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cltdr.ops.segments import inter_union, iou_of


def varifocal_loss(log_p: Tensor, target: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Element-wise varifocal loss (Zhang et al. 2021) from log-probabilities.

        q > 0:  -q * (q * log p + (1 - q) * log(1 - p))        q = 0:  -alpha * p^gamma * log(1 - p)

    Taking log p (not p) keeps the refined score sqrt(a * R) stable when it is tiny.
    """
    log_p = log_p.clamp(max=-1e-7)
    p = log_p.exp()
    log_1mp = torch.log(-torch.expm1(log_p))
    pos = -target * (target * log_p + (1 - target) * log_1mp)
    neg = -alpha * p.pow(gamma) * log_1mp
    return torch.where(target > 0, pos, neg)


def sigmoid_focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss (Lin et al. 2017) of logits against targets in [0, 1] (soft targets allowed):

        alpha_t * (1 - p_t)^gamma * BCE(p, q),    p_t = p q + (1 - p)(1 - q),    alpha_t = alpha q + (1 - alpha)(1 - q)

    (alpha < 0: no alpha_t). The released code's loss on the coarse (pre-refinement) classification.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss


def _inter_union(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Distances from one point are the segments [-d_start, d_end] of a frame centred on it."""
    return inter_union(-pred[..., 0], pred[..., 1], -target[..., 0], target[..., 1])


def distance_iou(pred: Tensor, target: Tensor) -> Tensor:
    """tIoU of segments given as distances from one point: (..., 2) x (..., 2) -> (...)."""
    return iou_of(*_inter_union(pred, target))


def iou_loss(pred: Tensor, target: Tensor, kind: str = "diou", eps: float = 1e-6) -> Tensor:
    """1 - IoU, GIoU (minus the enclosing gap share) or DIoU (minus squared centre distance over enclosure)."""
    inter, union = _inter_union(pred, target)
    iou = iou_of(inter, union)
    if kind == "iou":
        return 1 - iou
    ps, pe, ts, te = -pred[..., 0], pred[..., 1], -target[..., 0], target[..., 1]
    enclose = (torch.maximum(pe, te) - torch.minimum(ps, ts)).clamp(min=eps)
    if kind == "giou":
        return 1 - iou + (enclose - union) / enclose
    if kind == "diou":
        center_gap = 0.5 * ((ps + pe) - (ts + te))
        return 1 - iou + (center_gap / enclose) ** 2
    raise ValueError(f"unknown IoU loss kind {kind!r}; expected 'iou', 'giou' or 'diou'")
