"""FCOS-style label assignment on the points of every pyramid level.

Shapes: P points (all levels concatenated), N ground-truth segments of one video, K classes.
Positions and segments are in feature-grid steps; regression targets are in units of each point's stride.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor


class Points(NamedTuple):
    """The points of all levels: point ``i`` sits at grid position ``position[i]`` of level stride ``stride[i]``."""

    position: Tensor  # (P,) t * stride
    stride: Tensor  # (P,)
    reg_min: Tensor  # (P,) the level's regression range, in grid steps
    reg_max: Tensor  # (P,)


def make_points(lengths: Sequence[int], ranges: Sequence[tuple[float, float]], device=None) -> Points:
    """Points for levels of ``lengths[l]`` steps with stride 2^l and regression ranges ``ranges[l]``."""
    parts = []
    for l, (T, (lo, hi)) in enumerate(zip(lengths, ranges)):
        s = 2.0 ** l
        pos = torch.arange(T, dtype=torch.float32, device=device) * s
        parts.append((pos, torch.full_like(pos, s), torch.full_like(pos, lo), torch.full_like(pos, hi)))
    return Points(*(torch.cat(p) for p in zip(*parts)))


class Targets(NamedTuple):
    cls: Tensor  # (P, K) 1 for each class a point is positive for (several when equally short actions tie)
    reg: Tensor  # (P, 2) distances to the assigned action's start and end, in strides; 0 on negatives
    label: Tensor  # (P,) class of the assigned action (the channel whose boundaries regress it); -1 on negatives

    @property
    def positive(self) -> Tensor:
        return self.label >= 0


def assign(points: Points, segments: Tensor, labels: Tensor, num_classes: int, center_radius: float = 1.5) -> Targets:
    """Assign one video's actions (N, 2) with labels (N,) to the points.

    A point is positive for an action if it lies strictly inside the action, within ``center_radius`` strides of
    its centre, and the action's larger distance from the point lies in the level's regression range. Where
    several actions qualify, the shortest wins; actions whose length ties with it (within 1e-3) add their
    labels too.
    """
    P = points.position.shape[0]
    device = points.position.device
    if segments.numel() == 0:
        return Targets(torch.zeros(P, num_classes, device=device), torch.zeros(P, 2, device=device),
                       torch.full((P,), -1, dtype=torch.long, device=device))
    pos = points.position[:, None]  # (P, 1)
    start, end = segments[None, :, 0], segments[None, :, 1]  # (1, N)
    left, right = pos - start, end - pos  # (P, N)
    center = 0.5 * (start + end)
    radius = points.stride[:, None] * center_radius
    inside_center = torch.minimum(pos - torch.maximum(center - radius, start),
                                  torch.minimum(center + radius, end) - pos) > 0
    max_dist = torch.maximum(left, right)
    in_range = (max_dist >= points.reg_min[:, None]) & (max_dist <= points.reg_max[:, None])
    lengths = (end - start).expand(P, -1).masked_fill(~(inside_center & in_range), math.inf)  # (P, N)
    min_len, best = lengths.min(dim=1)  # (P,)
    positive = torch.isfinite(min_len)
    ties = (lengths <= min_len[:, None] + 1e-3) & torch.isfinite(lengths)  # (P, N)
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(lengths.dtype)  # (N, K)
    cls = (ties.to(onehot.dtype) @ onehot).clamp(max=1.0)
    idx = torch.arange(P, device=device)
    reg = torch.stack([left[idx, best], right[idx, best]], -1) / points.stride[:, None]
    reg = reg * positive[:, None]
    label = torch.where(positive, labels.long()[best], torch.full_like(best, -1))
    return Targets(cls, reg, label)
