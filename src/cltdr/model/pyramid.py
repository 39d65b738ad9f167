"""What every encoder shares: the projection, the residual block skeleton and the L-level pyramid.

Shapes: B batch, C_in input channels, D channels, T steps of the current level, L levels.
An encoder maps (B, C_in, T) with mask (B, T) to L levels (B, D, T / 2^l) with their masks (B, T / 2^l);
T must be a multiple of 2^(L-1) (the collate pads to it). Encoders differ only in the block they stack:
GMG (gmg.py), local-window attention (transformer.py), SGP (sgp.py), a plain conv (here) or none (max-pool).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

from cltdr.model.layers import (
    ChannelLayerNorm,
    DropPath,
    MaskedConv1d,
    downsample_mask,
    masked_group_norm,
    masked_max_pool,
)


class Projection(nn.Module):
    """Two masked convs (k=3) to D channels, each followed by LayerNorm over channels and ReLU."""

    def __init__(self, in_dim: int, dim: int, kernel_size: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv1d(in_dim, dim, kernel_size), MaskedConv1d(dim, dim, kernel_size)])
        self.norms = nn.ModuleList([ChannelLayerNorm(dim), ChannelLayerNorm(dim)])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = norm(conv(x, mask)[0], m, relu=True)
        return x


class MixerBlock(nn.Module):
    """The block skeleton of GMG, SGP (TriDet) and the local Transformer (ActionFormer):

        y = skip(x) + DropPath(s1 * mixer(LN(x))),    out = y + DropPath(s2 * FFN(Norm(y)))

    ``mixer`` maps the LayerNorm of x, (B, D, T) with mask (B, T), to (B, D, T / stride): the GMG branches,
    the SGP branches, attention or a conv. ``skip`` is x, or a masked max-pool when ``stride`` is 2 (ActionFormer's
    downsampling blocks). Norm is a GroupNorm over valid steps (GMG, SGP) or a LayerNorm (Transformer); the FFN is
    1x1 conv, GELU, 1x1 conv. s1, s2 are 1, or learned per-channel scales started at ``layer_scale`` (CaiT's
    LayerScale, the released code's AffineDropPath): a block then starts as the identity.
    """

    def __init__(
        self,
        dim: int,
        mixer: nn.Module,
        *,
        ffn_dim: int,
        drop_path: float = 0.0,
        ffn_norm: Literal["group", "layer"] = "group",
        num_groups: int = 16,
        stride: int = 1,
        layer_scale: float | None = None,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.norm = ChannelLayerNorm(dim)
        self.mixer = mixer
        self.ffn_norm = (
            nn.GroupNorm(num_groups if dim % num_groups == 0 else 1, dim)
            if ffn_norm == "group"
            else ChannelLayerNorm(dim)
        )
        self.ffn = nn.Sequential(nn.Conv1d(dim, ffn_dim, 1), nn.GELU(), nn.Conv1d(ffn_dim, dim, 1))
        self.drop_path = DropPath(drop_path)
        self.stride = stride
        self.scales = None if layer_scale is None else nn.Parameter(torch.full((2, dim, 1), float(layer_scale)))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        out_mask = downsample_mask(mask, self.stride)
        om = out_mask.unsqueeze(1).to(x.dtype)
        skip = masked_max_pool(x, mask)[0] if self.stride > 1 else x * m
        s1, s2 = (om, om) if self.scales is None else (self.scales[0] * om, self.scales[1] * om)
        x = skip + self.drop_path(self.mixer(self.norm(x, m), mask) * s1)
        # GroupNorm's statistics would include padded steps: normalise each video over its valid steps.
        norm = self.ffn_norm
        h = masked_group_norm(norm, x, out_mask) if isinstance(norm, nn.GroupNorm) else norm(x)
        return x + self.drop_path(self.ffn(h) * s2)


class PyramidEncoder(nn.Module):
    """Projection, ``num_stem_blocks`` blocks at full resolution, then one block per extra level; LN per level.

    ``make_block(stride, level)`` builds one block, a module (B, D, T) x mask -> (B, D, T / stride), for
    ``level`` 0 (the full-resolution stem) or 1 .. L-1 (the block that makes that level). With
    ``strided_blocks`` each extra level's block downsamples itself (stride 2, ActionFormer); otherwise a masked
    max-pool (k=3, s=2) precedes it (GMG, SGP, conv). ``make_block=None``: no blocks, max-pools only (TemporalMaxer).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_levels: int,
        *,
        make_block: Callable[[int, int], nn.Module] | None,
        num_stem_blocks: int = 2,
        kernel_size: int = 3,
        strided_blocks: bool = False,
    ):
        super().__init__()
        self.num_levels = num_levels
        self.strided_blocks = strided_blocks
        self.projection = Projection(in_dim, dim, kernel_size)
        self.stem, self.branch = nn.ModuleList(), nn.ModuleList()
        if make_block is not None:
            self.stem.extend(make_block(1, 0) for _ in range(num_stem_blocks))
            self.branch.extend(make_block(2 if strided_blocks else 1, l) for l in range(1, num_levels))
        self.level_norms = nn.ModuleList(ChannelLayerNorm(dim) for _ in range(num_levels))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        x = self.projection(x, mask)
        for stem_block in self.stem:
            x = stem_block(x, mask)
        feats, masks = [x], [mask]
        for l in range(1, self.num_levels):
            block: nn.Module | None = self.branch[l - 1] if len(self.branch) else None
            if self.strided_blocks:
                assert block is not None, "strided blocks are the levels' own downsampling"
                x, mask = block(x, mask), downsample_mask(mask, 2)
            else:
                x, mask = masked_max_pool(x, mask)
                x = block(x, mask) if block is not None else x
            feats.append(x)
            masks.append(mask)
        feats = [norm(f, m.unsqueeze(1).to(f.dtype)) for norm, f, m in zip(self.level_norms, feats, masks)]
        return feats, masks


class MaxPoolEncoder(PyramidEncoder):
    """TemporalMaxer: the projection, then masked max-pooling (k=3, s=2) between levels and nothing else."""

    def __init__(self, in_dim: int, dim: int, num_levels: int, *, kernel_size: int = 3):
        super().__init__(in_dim, dim, num_levels, make_block=None, num_stem_blocks=0, kernel_size=kernel_size)


class ConvMixer(MaskedConv1d):
    """A plain (full, not depth-wise) masked conv as a block's mixer: (B, D, T) -> (B, D, T)."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]  # a mixer returns no mask
        return super().forward(x, mask)[0]


class ConvEncoder(PyramidEncoder):
    """Plain conv blocks: the :class:`MixerBlock` skeleton with a k=3 conv as its mixer, max-pool between levels."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_levels: int,
        *,
        num_full_res_blocks: int = 2,
        ffn_dim: int = 768,
        kernel_size: int = 3,
        drop_path: float = 0.1,
    ):
        def block(stride: int, level: int) -> MixerBlock:
            return MixerBlock(dim, ConvMixer(dim, dim, kernel_size), ffn_dim=ffn_dim, drop_path=drop_path)

        super().__init__(
            in_dim, dim, num_levels, make_block=block, num_stem_blocks=num_full_res_blocks, kernel_size=kernel_size
        )
