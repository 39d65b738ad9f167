"""Trident-head decoding (TriDet): boundary distances as expectations over neighbouring bins.

Shapes: B batch, K classes, T steps of one level, R = num_bins + 1 neighbours.
Distances are in units of the level's stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def neighbour_logits(logits: Tensor, num_bins: int, side: str) -> Tensor:
    """Boundary logits of each step's R neighbours: (B, K, T) -> (B, K, T, R).

    side='start': neighbours t - num_bins .. t (distance num_bins .. 0);
    side='end':   neighbours t .. t + num_bins (distance 0 .. num_bins). Beyond the sequence: logit 0.
    """
    pad = (num_bins, 0) if side == "start" else (0, num_bins)
    padded = F.pad(logits, pad)  # (B, K, T + num_bins)
    if torch.onnx.is_in_onnx_export():  # the exporter has no Unfold of a traced length: the same windows, stacked
        T = logits.shape[-1]
        return torch.stack([padded[..., r : r + T] for r in range(num_bins + 1)], -1)
    return padded.unfold(-1, num_bins + 1, 1)


def trident_distances(center: Tensor, start: Tensor, end: Tensor, num_bins: int) -> Tensor:
    """Expected start and end distances of every step for every class.

    center: (B, 2, R, T) centre-offset logits (start half, end half); start, end: (B, K, T) boundary logits.
    Returns (B, T, K, 2): distance to the start and to the end, each in [0, num_bins].
    """
    bins = torch.arange(num_bins + 1, dtype=start.dtype, device=start.device)  # (R,)
    out = []
    for side, logits, c, dist in (("start", start, center[:, 0], bins.flip(0)), ("end", end, center[:, 1], bins)):
        nb = neighbour_logits(logits, num_bins, side)  # (B, K, T, R)
        prob = torch.softmax(nb + c.transpose(1, 2).unsqueeze(1), dim=-1)  # + (B, 1, T, R)
        out.append((prob * dist).sum(-1))  # (B, K, T)
    return torch.stack(out, dim=-1).transpose(1, 2)  # (B, T, K, 2)
