"""The GMG encoder: projection, Gated Multi-Granularity blocks and the max-pool pyramid (paper eqs. 1-4).

Shapes: B batch, D channels, T time steps (of the current level), F = T // 2 + 1 frequency bins.
Each branch (instant, local, global), the gates and the kind of global branch can be switched from the config
(Tables 6-8); :class:`GMGMixer` defines what eq. 4 becomes then.
"""

from __future__ import annotations

import operator
from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.config import GMGOptions
from cltdr.model.attention import MaskedMultiHeadAttention
from cltdr.model.layers import MaskedConv1d, masked_group_norm, run_conv
from cltdr.model.pyramid import MixerBlock, Projection, PyramidEncoder
from cltdr.ops.dft import exporting, filter_dft

__all__ = ["GMGBlock", "GMGEncoder", "GMGMixer", "GlobalFilter", "Projection", "SpectralFilter", "masked_group_norm"]


class GlobalFilter(nn.Module):
    """Global branch (eqs. 1-3): FFT over time, a filter learned from the spectrum, inverse FFT.

    The filter W = Conv(ReLU(Conv(X_f))) uses depth-wise convs along the frequency axis on the real and
    imaginary parts (2D channels), so it adapts to any video length (unlike GFNet's fixed-size filter).
    Each video is transformed over its own valid steps only, so padding never enters its spectrum. Under
    TorchScript tracing and ONNX export the same filter runs as matrix products (:meth:`forward_dft`), the form
    those graphs can hold for any length and mask.
    """

    def __init__(self, dim: int, kernel_size: int = 3, init_std: float | None = None):
        super().__init__()
        self.conv1 = nn.Conv1d(2 * dim, 2 * dim, kernel_size, padding=kernel_size // 2, groups=2 * dim)
        self.conv2 = nn.Conv1d(2 * dim, 2 * dim, kernel_size, padding=kernel_size // 2, groups=2 * dim)
        if init_std is not None:  # GMGOptions.filter_init_std says why
            for p in (*self.conv1.parameters(), *self.conv2.parameters()):
                nn.init.normal_(p, 0.0, init_std)
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
            keep += [
                torch.ones(s.shape[-1], dtype=torch.bool, device=ri.device),
                torch.zeros(self.gap, dtype=torch.bool, device=ri.device),
            ]
        x = torch.cat(parts, -1)[None]  # (1, 2D, sum(F_b + gap))
        h = F.relu(self.conv1(x)) * torch.cat(keep)
        w = self.conv2(h)[0].split([n for s in specs for n in (s.shape[-1], self.gap)], -1)[0::2]
        return [torch.complex(*wi.to(s.real.dtype).chunk(2, dim=0)) for wi, s in zip(w, specs)]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if exporting():
            return self.forward_dft(x, mask)
        # FFTs of half precision need power-of-two lengths: transform in fp32 under autocast.
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        lengths = mask.sum(-1).tolist()
        specs = [torch.fft.rfft(h[b, :, :n], dim=-1, norm="ortho") for b, n in enumerate(lengths)]  # (D, F_b)
        out = torch.zeros_like(h)
        for b, (n, spec, w) in enumerate(zip(lengths, specs, self.filters(specs))):
            out[b, :, :n] = torch.fft.irfft(spec * w, n=n, dim=-1, norm="ortho")
        return out.to(x.dtype)

    def forward_dft(self, x: Tensor, mask: Tensor) -> Tensor:
        """:meth:`forward` with the real DFT as matrix products (``cltdr.ops.dft``): no per-video Python loop,
        the same output (tested against ``torch.fft``). (B, D, T) -> (B, D, T)."""
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

        def weights(real: Tensor, imag: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
            hidden = F.relu(self.conv1(torch.cat([real, imag], 1))) * bins  # (B, 2D, F)
            w_real, w_imag = self.conv2(hidden).chunk(2, dim=1)  # (B, D, F) each
            return w_real, w_imag

        return filter_dft(h, mask.sum(-1), weights).to(x.dtype)


class SpectralFilter(nn.Module):
    """The released code's global branch (``model.gmg.filter: spectral``): (B, D, T) -> (B, D, T), each video
    transformed over its own ``lengths`` steps (its valid steps, or the released variant's canvas).

    X = rfft(h); W = SoftShrink_0.001(A2 ReLU(A1 X + b1) + b2), A_i = w_i[0] + j w_i[1] one complex scalar per
    channel, ReLU and SoftShrink on real and imaginary parts apart; out = irfft(W * X).
    """

    def __init__(self, dim: int, shrink: float = 1e-3):
        super().__init__()
        self.w1 = nn.Parameter(0.02 * torch.randn(2, dim, 1))
        self.b1 = nn.Parameter(0.02 * torch.randn(2, dim))
        self.w2 = nn.Parameter(0.02 * torch.randn(2, dim, 1))
        self.b2 = nn.Parameter(0.02 * torch.randn(2, dim))
        self.shrink = shrink

    def weights(self, xr: Tensor, xi: Tensor) -> tuple[Tensor, Tensor]:
        """W's real and imaginary parts from X's, (..., D, F) each."""
        w1, b1, w2, b2 = self.w1, self.b1[..., None], self.w2, self.b2[..., None]
        o1r = F.relu(xr * w1[0] - xi * w1[1] + b1[0])
        o1i = F.relu(xi * w1[0] + xr * w1[1] + b1[1])
        o2r = o1r * w2[0] - o1i * w2[1] + b2[0]
        o2i = o1i * w2[0] + o1r * w2[1] + b2[1]
        return F.softshrink(o2r, self.shrink), F.softshrink(o2i, self.shrink)

    def filtered(self, h: Tensor) -> Tensor:
        """(..., D, T) real -> (..., D, T): the filter applied over the whole last axis."""
        X = torch.fft.rfft(h, dim=-1, norm="ortho")  # (..., D, F)
        W = torch.complex(*self.weights(X.real, X.imag))  # (..., D, F)
        return torch.fft.irfft(W * X, n=h.shape[-1], dim=-1, norm="ortho")

    def forward(self, h: Tensor, lengths: Tensor | None) -> Tensor:
        """``lengths`` (B,): each video's canvas (zero beyond it), or None when every canvas fills the tensor.
        Under TorchScript tracing and ONNX export the transforms are matrix products (``cltdr.ops.dft``), which
        follow the lengths as a tensor."""
        x = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h  # FFTs in fp32 under autocast
        if lengths is None:
            return self.filtered(x).to(h.dtype)
        # This W is computed bin by bin (no conv along frequency), so beyond a video's bins it reaches nothing and
        # W * X is 0 there (X is): it needs no bins mask, unlike GlobalFilter's.
        if exporting():
            return filter_dft(x, lengths, lambda real, imag, bins: self.weights(real, imag)).to(h.dtype)
        out = torch.zeros_like(x)
        for b, c in enumerate(lengths.tolist()):
            out[b, :, :c] = self.filtered(x[b, :, :c])
        return out.to(h.dtype)


class MaskedSpectralFilter(SpectralFilter):
    """:class:`SpectralFilter` over each video's valid steps, called as :class:`GlobalFilter` is: (x, mask)."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]  # a mask, not lengths
        return super().forward(x, mask.sum(-1))


class GMGMixer(nn.Module):
    """The gated branches of eq. 4, without the residual: (B, D, T) -> (B, D, T).

        f = x + [ReLU(f_local) * FC(x)] + [ReLU(f_global) * Conv(x)] + [f_global],    f_local = Conv(x)
                  instant term            local term                global term

    FC is a 1x1 conv, Conv a depth-wise conv (k=3), f_global the FFT filter of eqs. 1-3 (``global: fft``) or
    masked multi-head self-attention over the whole video (``'attention'``, Table 8). The switches are those of
    ``options`` (:class:`cltdr.config.GMGOptions`, Tables 6-7):

    - a branch that is off loses its term: ``global: none`` drops f_global, ``local: false`` the local
      term, ``instant: false`` the instant term;
    - a gate whose gating branch is off becomes the identity: without the global branch the local term is
      ``Conv(x)``, without the local branch the instant term is ``FC(x)``;
    - ``gate=False`` drops both gates: f = x + FC(x) + Conv(x) + f_global.

    For example instant and global only: f = x + FC(x) + f_global; local only: f = x + Conv(x).

    The released code's forms: ``gate_form: product`` makes the gates plain products and adds the branches'
    input to the terms, f = [FC(x) * f_l] + [f_l] + [f_global] + x with f_l = Conv(x) * f_global (the same
    rules when a branch is off; x is the block's LayerNorm here, the block adds its own residual);
    ``filter: spectral`` makes f_global their filter (:class:`MaskedSpectralFilter`); ``instant_depthwise``
    makes FC per-channel, ``local_kernel`` sets Conv's kernel; ``gate_init: zero`` starts FC's and Conv's
    weights and biases at 0, so the instant and local terms start at 0.
    """

    def __init__(self, dim: int, *, kernel_size: int = 3, options: GMGOptions = GMGOptions()):
        super().__init__()
        self.gate = options.gate
        self.product = options.gate_form == "product"
        fc_groups = dim if options.instant_depthwise else 1
        self.instant = nn.Conv1d(dim, dim, 1, groups=fc_groups) if options.instant else None  # FC
        local_kernel = options.local_kernel or kernel_size
        self.local = MaskedConv1d(dim, dim, local_kernel, groups=dim) if options.local else None
        if options.gate_init == "zero":
            for conv in (self.instant, self.local):
                if conv is not None:
                    nn.init.zeros_(conv.weight)
                    if conv.bias is not None:
                        nn.init.zeros_(conv.bias)
        self.global_filter: nn.Module | None = None  # the global branch, FFT filter or self-attention
        if options.global_ == "fft" and options.filter == "spectral":
            self.global_filter = MaskedSpectralFilter(dim)
        elif options.global_ == "fft":
            self.global_filter = GlobalFilter(dim, kernel_size, options.filter_init_std)
        elif options.global_ == "attention":
            self.global_filter = MaskedMultiHeadAttention(dim, options.num_heads)

    def _gated(self, gate: Tensor | None, x: Tensor) -> Tensor:
        if not self.gate or gate is None:
            return x
        return gate * x if self.product else F.relu(gate) * x

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        f_instant = run_conv(self.instant, h) if self.instant is not None else None
        f_local = self.local(h, mask)[0] if self.local is not None else None
        f_global = self.global_filter(h, mask) if self.global_filter is not None else None
        local_term = self._gated(f_global, f_local) if f_local is not None else None
        terms = []
        if f_instant is not None:
            # the ReLU form gates FC(x) with Conv(x), the product form with the gated local term
            terms.append(self._gated(local_term if self.product else f_local, f_instant))
        if local_term is not None:
            terms.append(local_term)
        if f_global is not None:
            terms.append(f_global)
        if self.product:
            terms.append(h)
        return reduce(operator.add, terms)


class GMGBlock(MixerBlock):
    """One Gated Multi-Granularity block (eq. 4, see :class:`GMGMixer`), then GroupNorm + FFN, both residual.

    The branches read a LayerNorm of x (pre-norm, as TriDet's SGP block does); x itself is the residual.
    ``layer_scale``: both residual branches scaled per channel, from this initial value (:class:`MixerBlock`).
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        kernel_size: int = 3,
        drop_path: float = 0.0,
        num_groups: int = 16,
        *,
        options: GMGOptions = GMGOptions(),
        layer_scale: float | None = None,
    ):
        mixer = GMGMixer(dim, kernel_size=kernel_size, options=options)
        super().__init__(
            dim, mixer, ffn_dim=ffn_dim, drop_path=drop_path, num_groups=num_groups, layer_scale=layer_scale
        )


class GMGEncoder(PyramidEncoder):
    """Projection, full-resolution GMG blocks, then (max-pool, GMG block) per extra level; LayerNorm per level.

    Input (B, C_in, T) with mask (B, T); output L levels of (B, D, T / 2^l) with their masks.
    T must be a multiple of 2^(L-1) (the collate pads to it). ``options``: the switches of :class:`GMGMixer`;
    its ``layer_scale`` scales the blocks after each max-pool (where the released code has its AffineDropPath).
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
        drop_path: float = 0.1,
        options: GMGOptions = GMGOptions(),
    ):
        def block(stride: int, level: int) -> GMGBlock:
            scale = options.layer_scale if level > 0 else None
            drop = drop_path if level > 0 or options.stem_drop_path else 0.0
            return GMGBlock(dim, ffn_dim, kernel_size, drop, options=options, layer_scale=scale)

        super().__init__(
            in_dim, dim, num_levels, make_block=block, num_stem_blocks=num_full_res_blocks, kernel_size=kernel_size
        )
