"""LayerNorm over the channels of a (B, C, T) tensor, optionally followed by ReLU and a 0/1 mask, as one op.

Shapes: B batch, C channels, T steps. Every head tower and the projection compute conv -> LayerNorm -> ReLU ->
mask at every level; written as separate tensor ops, autograd keeps about ten (B, C, T) intermediates and runs
as many elementwise kernels backward. Here the backward is written out (the LayerNorm gradient in closed form,
the ReLU and the mask as one product), which takes about a third of the time on a CPU, with the same result to
float rounding (tested against the composed ops, and by gradcheck in float64).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["channel_layer_norm"]


def _forward(
    x: Tensor, weight: Tensor, bias: Tensor, eps: float, mask: Tensor | None, relu: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(out, x_hat, rstd): out = [ReLU](x_hat * weight + bias) [* mask], x_hat = (x - mean) * rstd over C."""
    centered = x - x.mean(1, keepdim=True)
    rstd = torch.rsqrt(centered.square().mean(1, keepdim=True).add_(eps))  # (B, 1, T)
    x_hat = centered.mul_(rstd)  # (B, C, T)
    out = torch.addcmul(bias[:, None].to(x.dtype), x_hat, weight[:, None].to(x.dtype))
    if relu:
        out = out.clamp_(min=0)
    if mask is not None:
        out = out.mul_(mask)
    return out, x_hat, rstd


class _ChannelLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float, mask: Tensor | None, relu: bool):
        out, x_hat, rstd = _forward(x, weight, bias, eps, mask, relu)
        ctx.relu = relu
        ctx.save_for_backward(x_hat, rstd, weight, out if relu else mask)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        x_hat, rstd, weight, gate = ctx.saved_tensors
        if ctx.relu:  # d out / d y = 1 where out > 0: the ReLU was open and the mask 1
            grad = grad * (gate > 0)
        elif gate is not None:
            grad = grad * gate
        # With g = grad * weight (d loss / d x_hat): grad_x = (g - mean_C(g) - x_hat * mean_C(g * x_hat)) * rstd.
        # Two new (B, C, T) buffers at most: g goes into grad's when grad is this function's own product above,
        # g * x_hat into that of grad * x_hat once it is reduced, and grad_x is computed in place over g.
        gx = grad * x_hat  # (B, C, T)
        grad_weight = gx.sum((0, 2))
        grad_bias = grad.sum((0, 2))
        g = torch.mul(grad, weight[:, None].to(grad.dtype), out=grad if ctx.relu or gate is not None else None)
        gx = torch.mul(g, x_hat, out=gx)
        grad_x = g.sub_(g.mean(1, keepdim=True)).addcmul_(x_hat, gx.mean(1, keepdim=True), value=-1)
        grad_x.mul_(rstd)
        return grad_x, grad_weight, grad_bias, None, None, None


def channel_layer_norm(
    x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5, mask: Tensor | None = None, relu: bool = False
) -> Tensor:
    """LayerNorm of (B, C, T) over C with a per-channel affine map, then ReLU if ``relu``, then times ``mask``
    ((B, 1, T) of 0 and 1) if given. Half-precision inputs are normalised in fp32 (the result is fp32)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if mask is not None:
        mask = mask.to(x.dtype)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return _ChannelLayerNorm.apply(x, weight, bias, eps, mask, relu)
    return _forward(x, weight, bias, eps, mask, relu)[0]
