"""cltdr.ops.norm: the fused LayerNorm (+ ReLU + mask) against the composed ops it replaces, and gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cltdr.ops.norm import channel_layer_norm


def _reference(x, weight, bias, eps, mask, relu):
    """torch's own layer_norm over C of the (B, T, C) view, then ReLU and the mask as separate ops."""
    out = F.layer_norm(x.transpose(1, 2), (x.shape[1],), weight, bias, eps).transpose(1, 2)
    out = F.relu(out) if relu else out
    return out * mask if mask is not None else out


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_channel_layer_norm_equals_the_composed_ops(relu, masked):
    torch.manual_seed(0)
    B, C, T = 2, 6, 9
    x = torch.randn(B, C, T, dtype=torch.float64, requires_grad=True)
    weight = (torch.rand(C, dtype=torch.float64) + 0.5).requires_grad_()
    bias = torch.randn(C, dtype=torch.float64, requires_grad=True)
    mask = (torch.arange(T)[None] < torch.tensor([T, 5])[:, None]).unsqueeze(1).double() if masked else None
    args = (weight, bias, 1e-5, mask, relu)
    torch.testing.assert_close(channel_layer_norm(x, *args), _reference(x, *args))
    torch.autograd.gradcheck(lambda *t: channel_layer_norm(*t, 1e-5, mask, relu), (x, weight, bias))
    g = torch.randn(B, C, T, dtype=torch.float64)
    grads = torch.autograd.grad(channel_layer_norm(x, *args), (x, weight, bias), g)
    expected = torch.autograd.grad(_reference(x, *args), (x, weight, bias), g)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # the inference path (no autograd node) computes the same
        torch.testing.assert_close(channel_layer_norm(x, *args), _reference(x, *args))


def test_half_precision_is_normalised_in_fp32():
    x = torch.randn(2, 8, 5).bfloat16()
    w, b = torch.ones(8), torch.zeros(8)
    out = channel_layer_norm(x, w, b, relu=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _reference(x.float(), w, b, 1e-5, None, True))


def test_statistics_stay_fp32_under_autocast():
    """Under bf16 autocast the statistics (and the backward's means) are still taken in fp32."""
    torch.manual_seed(0)
    x = 100.0 + torch.randn(2, 64, 7)  # a large mean: bf16 statistics would be off by ~0.4
    w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = channel_layer_norm(x, w.detach(), b.detach())
        out_grad = channel_layer_norm(xg, w, b, relu=True)
    close = dict(atol=1e-4, rtol=1e-3)  # fp32 rounding of a mean of 100; bf16 statistics miss by ~0.4
    torch.testing.assert_close(out, _reference(x, w.detach(), b.detach(), 1e-5, None, False), **close)
    torch.testing.assert_close(out_grad, _reference(x, w.detach(), b.detach(), 1e-5, None, True), **close)
    g = torch.randn_like(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (grad,) = torch.autograd.grad(channel_layer_norm(xg, w, b), xg, g)
    xr = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(_reference(xr, w, b, 1e-5, None, False), xr, g)
    torch.testing.assert_close(grad, expected, **close)
