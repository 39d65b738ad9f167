"""Masked multi-head self-attention: over the whole video (vanilla Transformer) or inside a local window
(ActionFormer).

Shapes: B batch, D channels, H heads, E = D / H channels per head, T steps (T' = T / stride after a strided
block), W window steps. Padded keys are never attended, and outputs are zero on padded steps, so a video's
output does not depend on its batch's padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.model.layers import ChannelLayerNorm, MaskedConv1d, downsample_mask


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int | None = None) -> Tensor:
    """Scaled dot-product attention of (B, H, T, E) queries, keys and values; ``mask`` (B, T) marks valid keys.

    ``window=None``: every query sees every valid key. ``window=W`` (odd): query t sees the valid keys
    t - W//2 .. t + W//2 only, computed on a (B, H, T, W) band (memory linear in T, not quadratic).
    """
    if window is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    r = window // 2
    keys = F.pad(k, (0, 0, r, r)).unfold(2, window, 1)  # (B, H, T, E, W)
    values = F.pad(v, (0, 0, r, r)).unfold(2, window, 1)
    valid = F.pad(mask, (r, r), value=False).unfold(1, window, 1)  # (B, T, W)
    scores = (q.unsqueeze(-2) @ keys).squeeze(-2) * q.shape[-1] ** -0.5  # (B, H, T, W); batched matmuls, as
    # einsum would copy the unfolded views (15x slower on a CPU)
    # A padded query may see no valid key: a finite fill keeps its (discarded) row free of NaNs.
    scores = scores.masked_fill(~valid[:, None], torch.finfo(scores.dtype).min)
    return (values @ scores.softmax(-1).unsqueeze(-1)).squeeze(-1)  # (B, H, T, E)


class MaskedMultiHeadAttention(nn.Module):
    """Multi-head self-attention on (B, D, T) features: (B, D, T) -> (B, D, T / stride).

    ``conv_qkv`` (ActionFormer's MaskedMHCA): queries, keys and values first go through a depth-wise conv
    (k=3, ``stride``) and a LayerNorm each, so a strided block attends at the coarser level. Without it the
    projections read the input directly (vanilla self-attention), and ``stride`` must be 1.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        window: int | None = None,
        stride: int = 1,
        conv_qkv: bool = False,
        kernel_size: int = 3,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide the {dim} channels")
        if stride != 1 and not conv_qkv:
            raise ValueError("a strided attention needs conv_qkv=True (its queries are strided convs)")
        self.num_heads, self.window, self.stride = num_heads, window, stride
        self.qkv_convs = (
            nn.ModuleList(MaskedConv1d(dim, dim, kernel_size, stride=stride, groups=dim, bias=False) for _ in range(3))
            if conv_qkv
            else None
        )
        self.qkv_norms = nn.ModuleList(ChannelLayerNorm(dim) for _ in range(3)) if conv_qkv else None
        self.query, self.key, self.value = (nn.Conv1d(dim, dim, 1) for _ in range(3))
        self.proj = nn.Conv1d(dim, dim, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out_mask = downsample_mask(mask, self.stride)
        m = out_mask.unsqueeze(1).to(x.dtype)  # (B, 1, T')
        inputs = [x, x, x]
        if self.qkv_convs is not None and self.qkv_norms is not None:
            inputs = [norm(conv(x, mask)[0], m) for conv, norm in zip(self.qkv_convs, self.qkv_norms)]
        B, D, T = inputs[0].shape
        q, k, v = (
            lin(h).view(B, self.num_heads, D // self.num_heads, T).transpose(2, 3)  # (B, H, T', E)
            for lin, h in zip((self.query, self.key, self.value), inputs)
        )
        out = attend(q, k, v, out_mask, self.window).transpose(2, 3).reshape(B, D, T)
        return self.proj(out) * m
