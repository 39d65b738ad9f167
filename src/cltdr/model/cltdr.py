"""The CLTDR decoder: DCM, DRM with a Trident head, and the RefineHead with CLFF (paper eqs. 5-12).

Shapes: B batch, D channels, K classes, T steps of level l, R = num_bins + 1.
One decoder serves every level with shared parameters; by default P^{l+1} ('above': coarser, T/2 steps) helps
classification and P^{l-1} ('below': finer, 2T steps) helps regression. Where a neighbour level does not exist
(top / bottom), its term is left out. The ablations of Tables 9-11 choose the neighbours of each task, the
refinement and the fusion; TriDet's decoder is this one with no neighbours and no refinement.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.model.layers import ConvTower, LevelScales, MaskedConv1d, init_outputs, masked_mean, run_towers
from cltdr.model.outputs import LevelOutputs, Refinement
from cltdr.model.trident import trident_distances

__all__ = ["CLTDRDecoder", "CrossLevelFusion", "NeighbourFusion", "downsample", "upsample"]

Side = Literal["above", "below"]
FusionMode = Literal["attention", "add", "concat"]


def upsample(dim: int, depthwise: bool = False) -> nn.ConvTranspose1d:
    """Transposed conv (k=3, s=2): T/2 -> T steps, full or depth-wise."""
    return nn.ConvTranspose1d(dim, dim, 3, stride=2, padding=1, output_padding=1, groups=dim if depthwise else 1)


def downsample(dim: int, depthwise: bool = False) -> nn.Conv1d:
    """Strided conv (k=3, s=2): 2T -> T steps."""
    return nn.Conv1d(dim, dim, 3, stride=2, padding=1, groups=dim if depthwise else 1)


class CrossLevelFusion(nn.Module):
    """One neighbour level's contribution to P^l: forward returns P^l + term (P^l itself without a neighbour).

    f_n = Resample(P^n) brings the neighbour to T steps (transposed conv from above, strided conv from below);
    f_l = Conv(P^l). The term, by ``mode`` (Table 11):

        attention (eqs. 5-8):  f_n * W,  W = Sigmoid(FC(GAP(ReLU(f_n + f_l))))   (GAP over valid steps)
        add:                   f_n
        concat:                Conv1x1([f_n ; f_l])   (2D -> D channels)
    """

    def __init__(
        self,
        dim: int,
        resample: nn.Module,
        *,
        mode: FusionMode = "attention",
        kernel_size: int = 3,
        depthwise: bool = False,
    ):
        super().__init__()
        self.mode = mode
        self.resample = resample
        if mode != "add":
            self.conv = MaskedConv1d(dim, dim, kernel_size, groups=dim if depthwise else 1)
        if mode == "attention":
            self.fc = nn.Linear(dim, dim)
        elif mode == "concat":
            self.proj = nn.Conv1d(2 * dim, dim, 1)

    def term(self, p: Tensor, mask: Tensor, neighbour: Tensor) -> Tensor:
        """The neighbour's term, (B, D, T), zero on padded steps."""
        m = mask.unsqueeze(1).to(p.dtype)
        f_n = self.resample(neighbour) * m  # (B, D, T)
        if self.mode == "add":
            return f_n
        f_l = self.conv(p, mask)[0]
        if self.mode == "concat":
            return self.proj(torch.cat([f_n, f_l], 1)) * m
        pooled = masked_mean(F.relu(f_n + f_l), mask)  # (B, D)
        return f_n * torch.sigmoid(self.fc(pooled)).unsqueeze(-1)

    def forward(self, p: Tensor, mask: Tensor, neighbour: Tensor | None) -> Tensor:
        return p if neighbour is None else p + self.term(p, mask, neighbour)


class NeighbourFusion(nn.Module):
    """P^l plus the terms of the chosen neighbour levels: f = P^l + term_below(P^{l-1}) + term_above(P^{l+1}).

    With ``neighbours=()`` it is P^l itself. A neighbour missing at the bottom / top level is left out.
    CLFF (eq. 9) is this with both neighbours, ``mode='add'`` and a depth-wise strided conv from below.
    ``depthwise``: the conv that refines P^l (f_l) is depth-wise; ``depthwise_down`` / ``depthwise_up``: the
    strided conv from below / the transposed conv from above are.
    """

    def __init__(
        self,
        dim: int,
        neighbours: Sequence[Side],
        *,
        mode: FusionMode = "attention",
        kernel_size: int = 3,
        depthwise: bool = False,
        depthwise_down: bool = False,
        depthwise_up: bool = False,
    ):
        super().__init__()
        fusion: dict[str, Any] = dict(mode=mode, kernel_size=kernel_size, depthwise=depthwise)
        self.below = CrossLevelFusion(dim, downsample(dim, depthwise_down), **fusion) if "below" in neighbours else None
        self.above = CrossLevelFusion(dim, upsample(dim, depthwise_up), **fusion) if "above" in neighbours else None

    def forward(self, p: Tensor, mask: Tensor, finer: Tensor | None, coarser: Tensor | None) -> Tensor:
        out = p
        if self.below is not None and finer is not None:
            out = out + self.below.term(p, mask, finer)
        if self.above is not None and coarser is not None:
            out = out + self.above.term(p, mask, coarser)
        return out


class CLTDRDecoder(nn.Module):
    """Decoupled classification, decoupled regression with a Trident head, and refinement, for every level.

    ``cls_levels`` / ``reg_levels``: the neighbour levels fused into P^l for classification / regression
    (Table 9: 'above' is P^{l+1}, 'below' is P^{l-1}; () is P^l alone), by ``fusion`` (Table 11).
    ``refine`` (Table 10): which outputs the RefineHead refines; 'none' builds no CLFF and no RefineHead.
    ``clff_levels``: the neighbours CLFF adds (both, unless the pyramid has one level and so no neighbours).
    ``offset_init``: 'zero' starts the boundary refinement R_so, R_eo at 0 (the coarse boundaries), 'default'
    with PyTorch's conv initialisation. ``clamp_refined``: refined distances are kept >= 0 (released code).

    Layout (``cltdr.config.CLTDROptions`` says which choice is the paper's): ``depthwise``: DCM / DRM refine P^l,
    and DRM downsamples P^{l-1}, with depth-wise convs; ``depthwise_up``: the transposed convs of DCM and CLFF
    are depth-wise; ``shared_refine``: one RefineHead tower predicts R_co and the offsets (released code) instead
    of one tower each; ``refine_depthwise``: the RefineHead towers' convs before the last are depth-wise (the
    paper); ``detach_boundary``: the Trident start / end branches do not back-propagate into the
    features (TriDet's detach_feat).

    The released code's forms (``cltdr.config.CLTDROptions``): ``score`` and ``offsets`` choose the
    :class:`Refinement` (class-wise offsets in grid steps with 'grid'); ``clff_depthwise``: CLFF's strided conv is
    depth-wise; ``fusion_kernel``: the kernel of DCM / DRM's conv on P^l; ``boundary_input`` 'level': the start /
    end towers read P^l itself rather than DRM's output; ``center_scale``: the centre-offset logits become
    ReLU(s_l * z) with a learned s_l for each of the ``num_levels`` levels.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        head_dim: int = 512,
        head_layers: int = 3,
        num_bins: int = 16,
        kernel_size: int = 3,
        prior_prob: float = 0.01,
        cls_levels: Sequence[Side] = ("above",),
        reg_levels: Sequence[Side] = ("below",),
        refine: Literal["both", "cls", "reg", "none"] = "both",
        fusion: FusionMode = "attention",
        clff_levels: Sequence[Side] = ("below", "above"),
        offset_init: Literal["zero", "default"] = "zero",
        clamp_refined: bool = True,
        depthwise: bool = False,
        depthwise_up: bool = False,
        shared_refine: bool = False,
        refine_depthwise: bool = False,
        detach_boundary: bool = False,
        score: Literal["geometric_mean", "logit_product"] = "geometric_mean",
        offsets: Literal["strides", "grid"] = "strides",
        clff_depthwise: bool = True,
        fusion_kernel: int | None = None,
        boundary_input: Literal["regression", "level"] = "regression",
        center_scale: bool = False,
        offset_kernel: int | None = None,
        num_levels: int = 1,
    ):
        super().__init__()
        self.num_bins, self.num_classes = num_bins, num_classes
        fusion_opts: dict[str, Any] = dict(mode=fusion, kernel_size=fusion_kernel or kernel_size, depthwise=depthwise)
        self.dcm = NeighbourFusion(dim, cls_levels, depthwise_up=depthwise_up, **fusion_opts)
        self.drm = NeighbourFusion(dim, reg_levels, depthwise_down=depthwise, **fusion_opts)
        tower: dict[str, Any] = dict(num_layers=head_layers, kernel_size=kernel_size)
        self.cls_head = ConvTower(dim, head_dim, num_classes, prior_prob=prior_prob, **tower)
        self.center_head = ConvTower(dim, head_dim, 2 * (num_bins + 1), **tower)
        self.start_head = ConvTower(dim, head_dim, num_classes, **tower)
        self.end_head = ConvTower(dim, head_dim, num_classes, **tower)
        self.center_scales = LevelScales(num_levels) if center_scale else None
        self.detach_boundary, self.boundary_input = detach_boundary, boundary_input
        # CLFF (eq. 9): (depth-wise) strided conv from below, transposed conv from above.
        self.clff = (
            NeighbourFusion(dim, clff_levels, mode="add", depthwise_down=clff_depthwise, depthwise_up=depthwise_up)
            if refine != "none"
            else None
        )
        # RefineHead outputs: R_co (K logits, started at the prior) and / or R_so, R_eo (2 offsets, or 2K
        # class-wise ones).
        self.refine_parts = {
            name: n
            for name, n, on in (
                ("refine_cls", num_classes, refine in ("both", "cls")),
                ("refine_reg", 2 * num_classes if offsets == "grid" else 2, refine in ("both", "reg")),
            )
            if on
        }
        self.refine_cls = self.refine_reg = self.refine_head = None
        towers = (
            {"refine_head": self.refine_parts}
            if shared_refine and self.refine_parts
            else {name: {name: n} for name, n in self.refine_parts.items()}
        )
        # R_co starts at the prior (eq. 10's product of probabilities), or at logit 0 under the logit product,
        # whose score then starts at 1/2 everywhere, as the released code's (zero bias)
        r_co_prior = prior_prob if score == "geometric_mean" else 0.5
        for attr, parts in towers.items():
            # with offset_kernel, R_so / R_eo come from a conv of that kernel: the tower's last conv when they
            # are all it predicts, else a side conv beside R_co's
            side = offset_kernel is not None and "refine_reg" in parts and len(parts) > 1
            last = {k: n for k, n in parts.items() if not (side and k == "refine_reg")}
            head = ConvTower(
                dim,
                head_dim,
                sum(last.values()),
                out_kernel=offset_kernel if "refine_reg" in last else None,
                side_out=(parts["refine_reg"], offset_kernel) if side and offset_kernel is not None else None,
                depthwise=refine_depthwise,
                **tower,
            )
            start = 0
            for name, n in parts.items():
                opts: dict[str, Any] = dict(
                    prior_prob=r_co_prior if name == "refine_cls" else None,
                    zero=name == "refine_reg" and offset_init == "zero",
                )
                if head.side is not None and name == "refine_reg":
                    init_outputs(head.side, slice(None), **opts)
                else:
                    init_outputs(head.out, slice(start, start + n), **opts)
                    start += n
            setattr(self, attr, head)
        self.gap = max(kernel_size, offset_kernel or 1) // 2  # between levels laid end to end
        self.refinement = Refinement(score=score, offsets=offsets, clamp=clamp_refined)

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[LevelOutputs]:
        L = len(feats)

        def per_level(fusion: NeighbourFusion) -> list[Tensor]:
            return [
                fusion(feats[l], masks[l], feats[l - 1] if l > 0 else None, feats[l + 1] if l + 1 < L else None)
                for l in range(L)
            ]

        f_cls, f_reg = per_level(self.dcm), per_level(self.drm)
        f_bound = list(feats) if self.boundary_input == "level" else f_reg
        f_bound = [f.detach() for f in f_bound] if self.detach_boundary else f_bound
        towers = {
            "cls": (self.cls_head, f_cls),
            "center": (self.center_head, f_reg),
            "start": (self.start_head, f_bound),
            "end": (self.end_head, f_bound),
        }
        if self.clff is not None:
            f_c = per_level(self.clff)
            towers.update(
                {
                    name: (getattr(self, name), f_c)
                    for name in ("refine_head", "refine_cls", "refine_reg")
                    if getattr(self, name) is not None
                }
            )
        # The towers share their weights across levels: each runs once over all levels laid end to end.
        out = run_towers(towers, masks, gap=self.gap)
        if "refine_head" in out:  # one tower for both refinements: split its channels
            parts = [level.split(list(self.refine_parts.values()), dim=1) for level in out.pop("refine_head")]
            out.update({name: [p[i] for p in parts] for i, name in enumerate(self.refine_parts)})
        outputs = []
        for l, f in enumerate(f_cls):
            B, T = f.shape[0], f.shape[-1]
            center = out["center"][l]
            if self.center_scales is not None:
                center = self.center_scales.scale(center, l)
            center = center.view(B, 2, self.num_bins + 1, T)
            offsets = out["refine_reg"][l] if "refine_reg" in out else None  # (B, 2, T) or (B, 2K, T)
            if offsets is not None and self.refinement.offsets == "grid":
                offsets = torch.stack(offsets.split(self.num_classes, dim=1), -1)  # (B, K, T, 2)
            outputs.append(
                LevelOutputs(
                    cls_logits=out["cls"][l].transpose(1, 2),
                    distances=trident_distances(center, out["start"][l], out["end"][l], self.num_bins),
                    refine_logits=out["refine_cls"][l].transpose(1, 2) if "refine_cls" in out else None,
                    refine_offsets=offsets.transpose(1, 2) if offsets is not None else None,
                )
            )
        return outputs
