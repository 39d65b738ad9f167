"""Masked building blocks shared by the encoders and the heads.

Shapes: B batch, C channels, T time steps, L levels (T_l steps at level l). Features are (B, C, T); masks are
(B, T) bool, True on valid steps. Every block returns zeros on padded steps, so that a video's output never
depends on its batch's padding.
"""

from __future__ import annotations

import math
from typing import Mapping, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cltdr.ops.norm import channel_layer_norm


def downsample_mask(mask: Tensor, stride: int) -> Tensor:
    """(B, T) -> (B, ceil(T / stride)): a coarse step is valid when the fine step it is centred on is."""
    return mask[:, ::stride] if stride > 1 else mask


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid steps: (B, C, T), (B, T) -> (B, C)."""
    m = mask.unsqueeze(1).to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def run_conv(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``conv(x)``; a per-channel kernel-1 conv as the per-channel affine map it is (a CPU runs grouped 1x1 convs
    one group at a time, about 5x slower). It calls no forward hooks: hook the caller's module instead."""
    if conv.kernel_size[0] > 1 or conv.groups == 1 or conv.groups != conv.out_channels or conv.stride[0] != 1:
        return nn.Conv1d.forward(conv, x)  # not conv(x): a MaskedConv1d's own forward takes a mask
    out = x * conv.weight[:, 0]
    return out if conv.bias is None else out + conv.bias[:, None]


class MaskedConv1d(nn.Conv1d):
    """Conv1d with 'same' padding whose output is zeroed on padded steps.

    Padded inputs are zero, exactly what the conv's own zero padding sees at the end of a video that is not
    padded, so valid outputs are padding-invariant. Returns the output and the (possibly strided) mask.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=bias
        )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]  # takes the mask
        out_mask = downsample_mask(mask, self.stride[0])
        return run_conv(self, x) * out_mask.unsqueeze(1).to(x.dtype), out_mask

    def unmasked(self, x: Tensor) -> Tensor:
        """The conv alone, padded steps not zeroed: for a caller that zeroes them itself."""
        return run_conv(self, x)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, T) tensor, computed along C in place (``cltdr.ops.norm``): on a CPU
    this takes half the time of ``layer_norm`` on the transposed tensor, and the conv that reads the result runs
    on a contiguous input (a transposed one costs it about 1.5x). ``relu`` and ``mask`` ((B, 1, T) of 0 / 1)
    follow it inside the same op, as the towers and the projection use it. Half-precision inputs are
    normalised in fp32."""

    def forward(self, x: Tensor, mask: Tensor | None = None, relu: bool = False) -> Tensor:
        assert self.weight is not None and self.bias is not None, "an affine LayerNorm"
        return channel_layer_norm(x, self.weight, self.bias, self.eps, mask, relu)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for a whole sample with probability ``p`` in training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def masked_max_pool(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Max-pool (k=3, s=2, p=1) that never takes a padded step: (B, C, T) -> (B, C, ceil(T/2))."""
    out_mask = downsample_mask(mask, 2)
    x = x.masked_fill(~mask.unsqueeze(1), float("-inf"))
    out = F.max_pool1d(x, kernel_size=3, stride=2, padding=1)
    return out.masked_fill(~out_mask.unsqueeze(1), 0.0), out_mask


def init_outputs(conv: nn.Conv1d, channels: slice, *, prior_prob: float | None = None, zero: bool = False) -> None:
    """Initialise some output channels of a prediction conv: ``prior_prob`` starts them at that foreground
    probability (as in focal-loss detectors); ``zero`` makes them predict exactly 0 (a refinement that begins as
    the identity; the weights still get gradients, so they learn from the first step)."""
    with torch.no_grad():
        assert conv.bias is not None, "a prediction conv has a bias"
        if prior_prob is not None:
            conv.bias[channels] = -math.log((1 - prior_prob) / prior_prob)
        if zero:
            conv.weight[channels] = 0.0
            conv.bias[channels] = 0.0


class ConvTower(nn.Module):
    """``num_layers`` masked convs; LayerNorm + ReLU after all but the last, which predicts ``out_channels``.

    Every head of the decoder is one of these (classification, Trident centre / start / end branches,
    refinement), so they differ only in widths and the initialisation of the last conv. ``out_kernel``: the last
    conv's kernel (default ``kernel_size``); ``side_out`` (channels, kernel): a second output conv reading the
    same features, its channels after the last conv's (the released RefineHead's kernel-7 offset convs).
    ``depthwise``: the convs before the last are grouped, ``gcd(in, hidden)`` groups, so depth-wise when the
    widths match; the last conv, which predicts, stays full.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        *,
        num_layers: int = 3,
        kernel_size: int = 3,
        prior_prob: float | None = None,
        zero_init: bool = False,
        out_kernel: int | None = None,
        side_out: tuple[int, int] | None = None,
        depthwise: bool = False,
    ):
        super().__init__()
        widths = [in_channels] + [hidden] * (num_layers - 1)
        self.convs = nn.ModuleList(
            MaskedConv1d(w, hidden, kernel_size, groups=math.gcd(w, hidden) if depthwise else 1, bias=False)
            for w in widths[:-1]
        )
        self.norms = nn.ModuleList(ChannelLayerNorm(hidden) for _ in widths[:-1])
        self.out = MaskedConv1d(widths[-1], out_channels, out_kernel or kernel_size)
        self.side = None if side_out is None else MaskedConv1d(widths[-1], *side_out)
        init_outputs(self.out, slice(None), prior_prob=prior_prob, zero=zero_init)

    def hidden(self, x: Tensor, mask: Tensor, extent: Tensor | None = None) -> Tensor:
        """The features the last conv reads. Hidden activations are zeroed outside ``extent`` (default: the
        mask); the released code leaves them unmasked inside its padded canvas (``cltdr.model.released``)."""
        m = (mask if extent is None else extent).unsqueeze(1).to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            # Within the mask the conv's own masking is redundant (the LayerNorm is per step and the product with
            # m re-zeroes padded steps): skip it. Inside a wider extent it is the released code's behaviour.
            y = cast(MaskedConv1d, conv).unmasked(x) if extent is None else conv(x, mask)[0]
            x = norm(y, m, relu=True)
        return x

    def forward(self, x: Tensor, mask: Tensor, extent: Tensor | None = None) -> Tensor:
        h = self.hidden(x, mask, extent)
        if self.side is None:
            return self.out(h, mask)[0]
        return torch.cat([self.out(h, mask)[0], self.side(h, mask)[0]], 1)


class LevelScales(nn.ParameterList):
    """One learnt scalar per pyramid level (started at 1), applied as ReLU(s_l * x): the released code's scaling
    of the centre-offset logits. A ParameterList, so its state-dict keys are ``<name>.<level>``."""

    def __init__(self, num_levels: int):
        super().__init__(nn.Parameter(torch.tensor(1.0)) for _ in range(num_levels))

    def scale(self, x: Tensor, level: int) -> Tensor:  # a ParameterList cannot be called
        return F.relu(x * self[level])


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


def concat_levels(feats: list[Tensor], masks: list[Tensor], gap: int = 1) -> tuple[Tensor, list[int]]:
    """Levels (B, *, T_l) laid end to end along time, each followed by ``gap`` masked-out steps:
    (B, *, sum(T_l + gap)).

    With that gap, a tower of masked convs of kernel <= 2 * gap + 1 over the concatenation equals the tower run
    on each level: every conv re-zeroes masked steps, so no level ever reads its neighbour's features.
    """
    parts = []
    for f, m in zip(feats, masks):
        if f.dtype != torch.bool:
            f = f * m.unsqueeze(1).to(f.dtype)
        parts += [f, f.new_zeros(*f.shape[:-1], gap)]
    return torch.cat(parts, -1), [f.shape[-1] for f in feats]


def split_levels(x: Tensor, sizes: list[int], gap: int = 1) -> list[Tensor]:
    """Inverse of :func:`concat_levels`: (B, C, sum(T_l + gap)) -> [(B, C, T_l)]."""
    chunks = x.split([n for T in sizes for n in (T, gap)], dim=-1)
    return list(chunks[0::2])


def run_towers(
    towers: Mapping[str, tuple[nn.Module, list[Tensor]]],
    masks: list[Tensor],
    *,
    extents: list[Tensor] | None = None,
    gap: int = 1,
) -> dict[str, list[Tensor]]:
    """Run towers whose weights are shared across levels once over all levels laid end to end.

    ``towers``: name -> (tower, its per-level inputs [(B, C, T_l)]); returns name -> [(B, C_out, T_l)].
    Towers reading the same input list share one concatenation of it. ``gap``: masked steps between levels, at
    least half the largest kernel. ``extents`` (the released code's canvases, ``cltdr.model.released``): the
    steps each input holds, a superset of the valid ones; the towers are then called as
    ``tower(x, mask, extent)``.
    """
    mask, sizes = concat_levels(masks, masks, gap)
    extent = None if extents is None else concat_levels(extents, extents, gap)[0]
    joined: dict[int, Tensor] = {}
    out = {}
    for name, (tower, feats) in towers.items():
        if id(feats) not in joined:
            joined[id(feats)] = concat_levels(feats, masks if extents is None else extents, gap)[0]
        x = joined[id(feats)]
        y = tower(x, mask) if extent is None else tower(x, mask, extent)
        out[name] = split_levels(y, sizes, gap)
    return out
