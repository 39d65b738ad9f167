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


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of broadcastable ``(..., 2)`` segment tensors -> ``(...)``."""
    a_len = (a[..., 1] - a[..., 0]).clamp_min(0)
    b_len = (b[..., 1] - b[..., 0]).clamp_min(0)
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    union = a_len + b_len - inter
    # union == 0 only when both are empty, and then inter == 0: divide by 1 (no NaN, also in the gradient)
    return inter / torch.where(union > 0, union, torch.ones_like(union))


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
