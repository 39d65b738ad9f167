"""FCOS-style label assignment on the points of every pyramid level.

Shapes: P points (all levels concatenated), N ground-truth segments of one video, K classes.
Positions and segments are in feature-grid steps; regression targets are in units of each point's stride.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from cltdr.model.outputs import Points, segments_to_distances


class Targets(NamedTuple):
    cls: Tensor  # (P, K) 1 for each class a point is positive for
    reg: Tensor  # (P, K, 2) distances to the start and end of each positive class's action, in strides; 0 elsewhere

    @property
    def positive(self) -> Tensor:
        """(P,) points positive for at least one class."""
        return self.cls.any(-1)


def assign(
    points: Points,
    segments: Tensor,
    labels: Tensor,
    num_classes: int,
    center_radius: float = 1.5,
    multi_label: bool = False,
) -> Targets:
    """Assign one video's actions (N, 2) with labels (N,) to the points.

    An action *qualifies* at a point if the point lies strictly inside it, within ``center_radius`` strides of
    its centre, and the action's larger distance from the point lies in the level's regression range.

    - ``multi_label=False`` (ActionFormer / TriDet): only the shortest qualifying action counts, with actions
      whose length ties with it (within 1e-3) adding their classes.
    - ``multi_label=True`` (dense, overlapping labels such as MultiTHUMOS): every class with a qualifying action
      is positive, each regressing its own shortest qualifying action.

    Either way each positive class of a point regresses an action of that class (the Trident head predicts
    boundaries per class), so ``reg`` is class-wise.
    """
    P, N = points.position.shape[0], segments.shape[0]
    device = points.position.device
    pos = points.position[:, None]  # (P, 1)
    start, end = segments[None, :, 0], segments[None, :, 1]  # (1, N)
    left, right = pos - start, end - pos  # (P, N)
    center = 0.5 * (start + end)
    radius = points.stride[:, None] * center_radius
    inside_center = (
        torch.minimum(pos - torch.maximum(center - radius, start), torch.minimum(center + radius, end) - pos) > 0
    )
    max_dist = torch.maximum(left, right)
    in_range = (max_dist >= points.reg_min[:, None]) & (max_dist <= points.reg_max[:, None])
    lengths = (end - start).expand(P, -1).masked_fill(~(inside_center & in_range), math.inf)  # (P, N)
    if not multi_label and N:
        shortest = lengths.min(dim=1, keepdim=True).values  # (P, 1)
        lengths = lengths.masked_fill(lengths > shortest + 1e-3, math.inf)
    # Per (point, class): the shortest qualifying action of that class, first in file order on ties.
    lab = labels.long()[None].expand(P, -1)  # (P, N)
    best_len = torch.full((P, num_classes), math.inf, device=device).scatter_reduce(1, lab, lengths, "amin")
    is_best = torch.isfinite(lengths) & (lengths == best_len.gather(1, lab))  # (P, N)
    n_idx = torch.where(is_best, torch.arange(N, device=device)[None], torch.full_like(lab, N))
    best = torch.full((P, num_classes), N, device=device).scatter_reduce(1, lab, n_idx, "amin")  # (P, K)
    cls = best < N  # (P, K)
    regressed = torch.cat([segments, segments.new_zeros(1, 2)])[best]  # (P, K, 2); row N: no action
    reg = segments_to_distances(pos, points.stride[:, None], regressed) * cls[..., None]  # (P, K, 2)
    return Targets(cls.to(pos.dtype), reg)
