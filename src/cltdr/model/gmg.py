"""The GMG encoder: projection, Gated Multi-Granularity blocks and the max-pool pyramid (paper eqs. 1-4).

Shapes: B batch, D channels, T time steps (of the current level), F = T // 2 + 1 frequency bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ChannelLayerNorm, DropPath, MaskedConv1d, masked_max_pool


class Projection(nn.Module):
    """Two masked convs (k=3) to D channels, each followed by LayerNorm over channels and ReLU."""

    def __init__(self, in_dim: int, dim: int, kernel_size: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv1d(in_dim, dim, kernel_size), MaskedConv1d(dim, dim, kernel_size)])
        self.norms = nn.ModuleList([ChannelLayerNorm(dim), ChannelLayerNorm(dim)])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask)[0])) * m
        return x


class GlobalFilter(nn.Module):
    """Global branch (eqs. 1-3): FFT over time, a filter learned from the spectrum, inverse FFT.

    The filter W = Conv(ReLU(Conv(X_f))) uses depth-wise convs along the frequency axis on the real and
    imaginary parts (2D channels), so it adapts to any video length (unlike GFNet's fixed-size filter).
    Each video is transformed over its own valid steps only, so padding never enters its spectrum.
    """

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(2 * dim, 2 * dim, kernel_size, padding=kernel_size // 2, groups=2 * dim)
        self.conv2 = nn.Conv1d(2 * dim, 2 * dim, kernel_size, padding=kernel_size // 2, groups=2 * dim)
        self.gap = kernel_size // 2

    def filters(self, specs: list[Tensor]) -> list[Tensor]:
        """W of eq. 2 for spectra of any lengths: [(D, F_b) complex] -> [(D, F_b) complex].

        The spectra are laid end to end along frequency with zero gaps, so one pair of convs serves a whole
        batch of different lengths (the gaps are re-zeroed between the convs: no spectrum reads another).
        """
        parts, keep = [], []
        for s in specs:
            ri = torch.cat([s.real, s.imag], 0).to(self.conv1.weight.dtype)  # (2D, F_b)
            parts += [ri, ri.new_zeros(ri.shape[0], self.gap)]
            keep += [torch.ones(s.shape[-1], dtype=torch.bool, device=ri.device),
                     torch.zeros(self.gap, dtype=torch.bool, device=ri.device)]
        x = torch.cat(parts, -1)[None]  # (1, 2D, sum(F_b + gap))
        h = F.relu(self.conv1(x)) * torch.cat(keep)
        w = self.conv2(h)[0].split([n for s in specs for n in (s.shape[-1], self.gap)], -1)[0::2]
        return [torch.complex(*wi.to(s.real.dtype).chunk(2, dim=0)) for wi, s in zip(w, specs)]

    def filter(self, x: Tensor) -> Tensor:
        """Unmasked global filtering of equally long sequences: (B, D, T) -> (B, D, T)."""
        return self(x, torch.ones(x.shape[0], x.shape[-1], dtype=torch.bool, device=x.device))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # FFTs of half precision need power-of-two lengths: transform in fp32 under autocast.
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        lengths = mask.sum(-1).tolist()
        specs = [torch.fft.rfft(h[b, :, :n], dim=-1, norm="ortho") for b, n in enumerate(lengths)]  # (D, F_b)
        out = torch.zeros_like(h)
        for b, (n, spec, w) in enumerate(zip(lengths, specs, self.filters(specs))):
            out[b, :, :n] = torch.fft.irfft(spec * w, n=n, dim=-1, norm="ortho")
        return out.to(x.dtype)


class GMGBlock(nn.Module):
    """One Gated Multi-Granularity block (eq. 4), then GroupNorm + FFN, both with residuals.

        f = x + ReLU(f_local) * FC(x) + ReLU(f_global) * f_local + f_global,  f_local = DWConv(x)

    The branches read a LayerNorm of x (pre-norm, as TriDet's SGP block does); x itself is the residual.
    """

    def __init__(self, dim: int, ffn_dim: int, kernel_size: int = 3, drop_path: float = 0.0,
                 num_groups: int = 16):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.instant = nn.Conv1d(dim, dim, 1)
        self.local = MaskedConv1d(dim, dim, kernel_size, groups=dim)
        self.global_filter = GlobalFilter(dim, kernel_size)
        self.ffn_norm = nn.GroupNorm(num_groups if dim % num_groups == 0 else 1, dim)
        self.ffn = nn.Sequential(nn.Conv1d(dim, ffn_dim, 1), nn.GELU(), nn.Conv1d(ffn_dim, dim, 1))
        self.drop_path = DropPath(drop_path)

    def mix(self, x: Tensor, mask: Tensor) -> Tensor:
        """The three gated branches of eq. 4, without the residual: (B, D, T) -> (B, D, T)."""
        m = mask.unsqueeze(1).to(x.dtype)
        h = self.norm(x) * m
        f_instant = self.instant(h)
        f_local = self.local(h, mask)[0]
        f_global = self.global_filter(h, mask)
        return (F.relu(f_local) * f_instant + F.relu(f_global) * f_local + f_global) * m

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        x = x * m + self.drop_path(self.mix(x, mask))
        # GroupNorm's statistics would include padded steps: normalise each video over its valid steps.
        return x + self.drop_path(self.ffn(masked_group_norm(self.ffn_norm, x, mask)) * m)


def masked_group_norm(norm: nn.GroupNorm, x: Tensor, mask: Tensor) -> Tensor:
    """GroupNorm whose statistics are taken over valid steps only: (B, D, T) -> (B, D, T), zero on padding."""
    B, D, T = x.shape
    G = norm.num_groups
    m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
    xg = x.reshape(B, G, D // G, T)
    mg = m.unsqueeze(1)  # (B, 1, 1, T)
    count = mg.sum((-1, -2), keepdim=True) * (D // G)
    mean = (xg * mg).sum((-1, -2), keepdim=True) / count
    var = (((xg - mean) * mg) ** 2).sum((-1, -2), keepdim=True) / count
    out = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(B, D, T)
    return (out * norm.weight[:, None] + norm.bias[:, None]) * m


class GMGEncoder(nn.Module):
    """Projection, full-resolution GMG blocks, then (max-pool, GMG block) per extra level; LayerNorm per level.

    Input (B, C_in, T) with mask (B, T); output L levels of (B, D, T / 2^l) with their masks.
    T must be a multiple of 2^(L-1) (the collate pads to it).
    """

    def __init__(self, in_dim: int, dim: int, num_levels: int, *, num_full_res_blocks: int = 2,
                 ffn_dim: int = 768, kernel_size: int = 3, drop_path: float = 0.1):
        super().__init__()
        self.projection = Projection(in_dim, dim, kernel_size)
        self.stem = nn.ModuleList(GMGBlock(dim, ffn_dim, kernel_size, drop_path) for _ in range(num_full_res_blocks))
        self.branch = nn.ModuleList(GMGBlock(dim, ffn_dim, kernel_size, drop_path) for _ in range(num_levels - 1))
        self.level_norms = nn.ModuleList(ChannelLayerNorm(dim) for _ in range(num_levels))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        x = self.projection(x, mask)
        for block in self.stem:
            x = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = masked_max_pool(x, mask)
            x = block(x, mask)
            feats.append(x)
            masks.append(mask)
        feats = [norm(f) * m.unsqueeze(1).to(f.dtype) for norm, f, m in zip(self.level_norms, feats, masks)]
        return feats, masks
