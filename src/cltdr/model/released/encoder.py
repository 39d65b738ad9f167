"""The released encoder: projection, GMG blocks as the released code builds them, max-pool pyramid, a LayerNorm
per level (``cltdr.model.released`` says where it differs from the paper).

Shapes: B batch, C input channels, D channels, T steps of the current level, F = T // 2 + 1 frequency bins.
Every module takes the valid ``mask`` (B, T), the canvas ``extent`` (B, T) of each video and the canvas lengths
(B,) (None when every canvas fills the tensor); steps beyond a canvas stay zero.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.model.gmg import SpectralFilter
from cltdr.model.layers import (
    ChannelLayerNorm,
    DropPath,
    MaskedConv1d,
    downsample_mask,
    masked_group_norm,
    masked_max_pool,
    run_conv,
)

__all__ = ["AffineDropPath", "ReleasedEncoder", "ReleasedGMGBlock", "sinusoid_table"]


class AffineDropPath(nn.Module):
    """A learned per-channel scale (started at 1e-4), then stochastic depth: (B, D, T) -> (B, D, T)."""

    def __init__(self, dim: int, p: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), 1e-4))
        self.drop = DropPath(p)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(x * self.scale[:, None])


def _zero_beyond(x: Tensor, extent: Tensor | None) -> Tensor:
    """x with the steps beyond each video's canvas zeroed; ``extent`` (B, 1, T), None: x fills its canvas."""
    return x if extent is None else x * extent


class ReleasedGMGBlock(nn.Module):
    """The released GMG block (their SGPBlock) at one level: (B, D, T) -> (B, D, T), zero beyond the canvas.

        h = LN(x),  f_g = SpectralFilter(h),  f_l = Conv(h) * f_g,  f = FC(h) * f_l + f_l + f_g + h
        y = x * mask + s1 * f,    out = y + s2 * FFN(GroupNorm(y))

    FC and Conv are depth-wise (kernel 1 and ``local_kernel``); s1, s2 are :class:`AffineDropPath` scales when
    ``drop_path`` > 0, else 1. Norms, FFT and FFN run over the whole canvas (``extent``), as the released code's.
    """

    def __init__(self, dim: int, ffn_dim: int, *, local_kernel: int = 1, drop_path: float = 0.0, init_std: float = 0.0):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.global_filter = SpectralFilter(dim)
        self.instant = nn.Conv1d(dim, dim, 1, groups=dim)
        self.local = nn.Conv1d(dim, dim, local_kernel, padding=local_kernel // 2, groups=dim)
        self.ffn_norm = nn.GroupNorm(16, dim)
        self.ffn = nn.Sequential(nn.Conv1d(dim, ffn_dim, 1), nn.GELU(), nn.Conv1d(ffn_dim, dim, 1))
        self.mix_path: nn.Module = AffineDropPath(dim, drop_path) if drop_path > 0 else nn.Identity()
        self.ffn_path: nn.Module = AffineDropPath(dim, drop_path) if drop_path > 0 else nn.Identity()
        with torch.no_grad():  # the released initialisation: the gates' weights N(0, init_std^2), biases 0
            for conv in (self.instant, self.local):
                if init_std > 0:
                    conv.weight.normal_(0.0, init_std)
                else:
                    conv.weight.zero_()
            for layer in (self.instant, self.local, self.ffn[0], self.ffn[2]):
                assert isinstance(layer, nn.Conv1d) and layer.bias is not None
                layer.bias.zero_()

    def forward(self, x: Tensor, mask: Tensor, extent: Tensor, lengths: Tensor | None) -> Tensor:
        """``lengths`` None: every canvas fills the tensor, so nothing needs zeroing beyond it."""
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        e = None if lengths is None else extent.unsqueeze(1).to(x.dtype)
        h = _zero_beyond(self.norm(x), e)
        f_global = self.global_filter(h, lengths)
        f_local = run_conv(self.local, h) * f_global
        f = run_conv(self.instant, h) * f_local + f_local + f_global + h
        y = _zero_beyond(x * m + self.mix_path(f), e)
        if lengths is None:  # the plain GroupNorm, as the released code computes it
            n = F.group_norm(y, self.ffn_norm.num_groups, self.ffn_norm.weight, self.ffn_norm.bias)
        else:
            n = masked_group_norm(self.ffn_norm, y, extent)
        return _zero_beyond(y + self.ffn_path(self.ffn(n)), e)


def sinusoid_table(length: int, dim: int) -> Tensor:
    """(1, D, length): sin / cos of position / 10000^(2 floor(j / 2) / D) on even / odd channels j, / sqrt(D)."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # (length, D)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return (table.float().T[None] / math.sqrt(dim)).contiguous()


class ReleasedEncoder(nn.Module):
    """Projection (two bias-free convs, LayerNorm, ReLU), optional position embeddings, full-resolution blocks,
    then (max-pool, block) per extra level, and a LayerNorm per level: (B, C, T) -> L x (B, D, T / 2^l).

    ``forward`` takes the valid ``mask`` (B, T), the canvas ``extent`` (B, T) and the canvas lengths (B,) (None
    when every canvas fills the tensor); it returns the levels with their masks and extents.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_levels: int,
        *,
        num_full_res_blocks: int = 2,
        ffn_dim: int = 768,
        kernel_size: int = 3,
        local_kernel: int = 1,
        drop_path: float = 0.1,
        abs_position: bool = False,
        max_len: int = 2304,
        init_std: float = 0.0,
    ):
        super().__init__()
        self.embed = nn.ModuleList(
            [MaskedConv1d(in_dim, dim, kernel_size, bias=False), MaskedConv1d(dim, dim, kernel_size, bias=False)]
        )
        self.embed_norms = nn.ModuleList([ChannelLayerNorm(dim), ChannelLayerNorm(dim)])
        self.position: Tensor | None
        self.register_buffer("position", sinusoid_table(max_len, dim) if abs_position else None, persistent=False)
        block: dict[str, Any] = dict(ffn_dim=ffn_dim, init_std=init_std)
        self.stem = nn.ModuleList(ReleasedGMGBlock(dim, **block) for _ in range(num_full_res_blocks))
        self.branch = nn.ModuleList(
            ReleasedGMGBlock(dim, local_kernel=local_kernel, drop_path=drop_path, **block)
            for _ in range(num_levels - 1)
        )
        self.level_norms = nn.ModuleList(ChannelLayerNorm(dim) for _ in range(num_levels))

    def position_embedding(self, lengths: list[int], T: int) -> Tensor:
        """(B, D, T): each video's table over its canvas c, linearly resized to c when c exceeds the table."""
        assert self.position is not None
        out = self.position.new_zeros(len(lengths), self.position.shape[1], T)
        max_len = self.position.shape[-1]
        for c in sorted(set(lengths)):
            table = self.position[..., :c] if c <= max_len else F.interpolate(self.position, c, mode="linear")
            out[[b for b, n in enumerate(lengths) if n == c], :, :c] = table
        return out

    def forward(
        self, x: Tensor, mask: Tensor, extent: Tensor, lengths: Tensor | None
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        e = None if lengths is None else extent.unsqueeze(1).to(x.dtype)
        for conv, norm in zip(self.embed, self.embed_norms):
            x = norm(conv(x, mask)[0], e, relu=True)
        if self.position is not None:
            canvas = lengths.tolist() if lengths is not None else [x.shape[-1]] * x.shape[0]
            x = x + self.position_embedding(canvas, x.shape[-1]).to(x.dtype) * mask.unsqueeze(1).to(x.dtype)
        for block in self.stem:
            x = block(x, mask, extent, lengths)
        feats, masks, extents = [x], [mask], [extent]
        for block in self.branch:
            x = masked_max_pool(x, extent)[0]  # the released max-pool reads the whole canvas
            mask, extent = downsample_mask(mask, 2), downsample_mask(extent, 2)
            lengths = None if lengths is None else lengths // 2
            x = block(x, mask, extent, lengths)
            feats.append(x)
            masks.append(mask)
            extents.append(extent)
        if lengths is not None:
            feats = [norm(f, m.unsqueeze(1).to(f.dtype)) for norm, f, m in zip(self.level_norms, feats, extents)]
        else:
            feats = [norm(f) for norm, f in zip(self.level_norms, feats)]
        return feats, masks, extents
