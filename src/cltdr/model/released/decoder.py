"""The released decoder: DCM, DRM, CLFF, the heads and the Trident decoding, for every level with shared
parameters (``cltdr.model.released`` says where it differs from the paper).

Shapes: B batch, D channels, K classes, T steps of level l, R = num_bins + 1. The cross-level modules run over
each video's canvas (``extents``), the towers mask their outputs with the valid steps (``masks``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from cltdr.model.cltdr import NeighbourFusion
from cltdr.model.layers import ConvTower, LevelScales, MaskedConv1d, run_towers
from cltdr.model.outputs import LevelOutputs, Refinement
from cltdr.model.trident import trident_distances

__all__ = ["OFFSET_KERNEL", "ReleasedDecoder", "ReleasedRefineHead"]

OFFSET_KERNEL = 7  # kernel of the RefineHead's boundary-offset convs (fixed in the released code)


def _zero_bias(conv: nn.Conv1d) -> None:
    """The released heads' convs start with a zero bias (their MaskedConv1D)."""
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)


class ReleasedRefineHead(nn.Module):
    """The released RefineHead: one tower whose features give R_co (its own last conv) and the class-wise
    boundary offsets R_so, R_eo (kernel 7): (B, D, T) -> (B, 3K, T), channels [R_co; R_so; R_eo]."""

    def __init__(self, dim: int, hidden: int, num_classes: int, *, num_layers: int = 3, kernel_size: int = 3):
        super().__init__()
        self.tower = ConvTower(dim, hidden, num_classes, num_layers=num_layers, kernel_size=kernel_size)
        width = hidden if num_layers > 1 else dim
        self.start_offset = MaskedConv1d(width, num_classes, OFFSET_KERNEL)
        self.end_offset = MaskedConv1d(width, num_classes, OFFSET_KERNEL)
        for conv in (self.tower.out, self.start_offset, self.end_offset):
            _zero_bias(conv)

    def forward(self, x: Tensor, mask: Tensor, extent: Tensor | None = None) -> Tensor:
        h = self.tower.hidden(x, mask, extent)
        return torch.cat([conv(h, mask)[0] for conv in (self.tower.out, self.start_offset, self.end_offset)], 1)


class ReleasedDecoder(nn.Module):
    """The released decoder for every level: DCM, DRM, CLFF, the towers and the Trident decoding.

    ``forward(feats, masks, extents)``: L levels (B, D, T_l) with their valid masks and canvases -> one
    :class:`LevelOutputs` per level, refinement offsets class-wise in grid steps (:attr:`refinement`).
    """

    refinement = Refinement(score="logit_product", offsets="grid", clamp=True)

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_levels: int,
        *,
        head_dim: int = 512,
        head_layers: int = 3,
        num_bins: int = 16,
        head_kernel: int = 3,
        boundary_kernel: int = 3,
        prior_prob: float = 0.01,
    ):
        super().__init__()
        self.num_bins, self.num_classes = num_bins, num_classes
        self.dcm = NeighbourFusion(dim, ("above",), kernel_size=1)  # full transposed conv, 1x1 conv on P_l
        self.drm = NeighbourFusion(dim, ("below",), kernel_size=1)  # full strided conv, 1x1 conv on P_l
        self.clff = NeighbourFusion(dim, ("below", "above"), mode="add")  # full convs
        tower: dict[str, Any] = dict(num_layers=head_layers)
        self.cls_head = ConvTower(dim, head_dim, num_classes, kernel_size=head_kernel, prior_prob=prior_prob, **tower)
        self.center_head = ConvTower(dim, head_dim, 2 * (num_bins + 1), kernel_size=head_kernel, **tower)
        _zero_bias(self.center_head.out)
        self.center_scales = LevelScales(num_levels)
        boundary: dict[str, Any] = dict(kernel_size=boundary_kernel, prior_prob=prior_prob, **tower)
        self.start_head = ConvTower(dim, head_dim, num_classes, **boundary)
        self.end_head = ConvTower(dim, head_dim, num_classes, **boundary)
        self.refine_head = ReleasedRefineHead(dim, head_dim, num_classes, kernel_size=head_kernel, **tower)
        self.gap = max(head_kernel, boundary_kernel, OFFSET_KERNEL) // 2  # between levels laid end to end

    def forward(self, feats: Sequence[Tensor], masks: list[Tensor], extents: list[Tensor]) -> list[LevelOutputs]:
        L = len(feats)

        def per_level(fusion: NeighbourFusion) -> list[Tensor]:
            # the released cross-level modules mask nothing: they run over the canvas
            return [
                fusion(feats[l], extents[l], feats[l - 1] if l > 0 else None, feats[l + 1] if l + 1 < L else None)
                for l in range(L)
            ]

        f_bound = [f.detach() for f in feats]  # the released start / end towers do not train the encoder
        towers = {
            "cls": (self.cls_head, per_level(self.dcm)),
            "center": (self.center_head, per_level(self.drm)),
            "start": (self.start_head, f_bound),
            "end": (self.end_head, f_bound),
            "refine": (self.refine_head, per_level(self.clff)),
        }
        out = run_towers(towers, masks, extents=extents, gap=self.gap)
        outputs = []
        for l in range(L):
            B, T = feats[l].shape[0], feats[l].shape[-1]
            center = self.center_scales.scale(out["center"][l], l).view(B, 2, self.num_bins + 1, T)
            r_co, r_so, r_eo = out["refine"][l].split(self.num_classes, dim=1)  # (B, K, T) each
            outputs.append(
                LevelOutputs(
                    cls_logits=out["cls"][l].transpose(1, 2),
                    distances=trident_distances(center, out["start"][l], out["end"][l], self.num_bins),
                    refine_logits=r_co.transpose(1, 2),
                    refine_offsets=torch.stack([r_so, r_eo], -1).transpose(1, 2),  # (B, T, K, 2) grid steps
                )
            )
        return outputs
