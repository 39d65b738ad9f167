"""Temporal IoU between 1D segments.

Shapes: N, M = numbers of segments. A segment is a row ``[start, end]`` with ``start <= end``, in any unit
(grid steps or seconds) as long as both arguments share it. A segment with ``end <= start`` has length zero:
its IoU with anything is 0, and the result never holds NaN. Both functions are differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_segments(name: str, segments: Tensor) -> None:
    if segments.dim() != 2 or segments.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) holding [start, end] rows, got {tuple(segments.shape)}")


def inter_union(a_start: Tensor, a_end: Tensor, b_start: Tensor, b_end: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union lengths of broadcastable segments given by their starts and ends.

    The one core of every IoU in cltdr (pairwise, aligned, Soft-NMS, the IoU-family losses): a segment with
    ``end <= start`` has length 0, so it intersects nothing and adds nothing to a union.
    """
    inter = (torch.minimum(a_end, b_end) - torch.maximum(a_start, b_start)).clamp_min(0)
    union = (a_end - a_start).clamp_min(0) + (b_end - b_start).clamp_min(0) - inter
    return inter, union


def iou_of(inter: Tensor, union: Tensor) -> Tensor:
    """inter / union, and 0 where the union is empty (both segments empty): no NaN, also in the gradient."""
    return inter / torch.where(union > 0, union, torch.ones_like(union))


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of broadcastable ``(..., 2)`` segment tensors -> ``(...)``."""
    return iou_of(*inter_union(a[..., 0], a[..., 1], b[..., 0], b[..., 1]))


def segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise temporal IoU: ``a`` (N, 2), ``b`` (M, 2) -> (N, M)."""
    _check_segments("a", a)
    _check_segments("b", b)
    return _iou(a[:, None, :], b[None, :, :])  # (N, M)


def aligned_segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Row-by-row temporal IoU: ``a`` (N, 2), ``b`` (N, 2) -> (N,), ``out[i] = IoU(a[i], b[i])``."""
    _check_segments("a", a)
    _check_segments("b", b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"aligned_segment_iou needs as many rows in a as in b, got {a.shape[0]} and {b.shape[0]}")
    return _iou(a, b)  # (N,)
