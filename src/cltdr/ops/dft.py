"""The real DFT of a runtime length as matrix products: the exportable form of ``torch.fft.rfft`` / ``irfft``.

Shapes: B batch, D channels, T steps of the (padded) tensor, F = T // 2 + 1 frequency bins, n (B,) each video's
valid length (n_b <= T). Video b is transformed over its first n_b steps only, with ``norm="ortho"``, and its
spectrum holds n_b // 2 + 1 bins, the rest of the F bins zero: exactly ``torch.fft.rfft(x[b, :, :n_b])``, zero
padded to F bins. TorchScript tracing and the ONNX exporter cannot follow the per-video lengths of the FFT path
(Python ints); these ops take the lengths as a tensor, so one exported graph serves every T and every mask.
They cost O(T^2) per channel (the FFT O(T log T)): the price of an exact, portable graph (README, Deployment).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor


def exporting() -> bool:
    """Whether the caller runs under TorchScript tracing or ONNX export: the FFT paths then take these ops."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class DFTBases(NamedTuple):
    """The bases of :func:`rdft` / :func:`irdft` for lengths n (B,) on a tensor of T steps."""

    cos: Tensor  # (B, T, F) cos(2 pi k t / n) / sqrt(n) where t < n and k <= n // 2, else 0
    sin: Tensor  # (B, T, F) sin(2 pi k t / n) / sqrt(n), likewise
    bins: Tensor  # (B, F) bool: bin k exists for the video (k <= n // 2)
    weight: Tensor  # (B, F) how often bin k counts in the inverse: 1 for k = 0 and k = n / 2, else 2


def dft_bases(lengths: Tensor, num_steps: int, dtype: torch.dtype = torch.float32) -> DFTBases:
    """The bases for videos of ``lengths`` (B,) valid steps on a tensor of ``num_steps`` steps (T, may be traced)."""
    n = lengths.to(torch.long)[:, None, None]  # (B, 1, 1)
    t = torch.arange(num_steps, device=lengths.device)[None, :, None]  # (1, T, 1)
    k = torch.arange(num_steps // 2 + 1, device=lengths.device)[None, None, :]  # (1, 1, F)
    # (k t) mod n is exact in integers, so the angle stays accurate (to ~1e-6) for any length
    angle = (k * t).remainder(n).to(dtype) * (2 * math.pi / n.to(dtype))  # (B, T, F)
    bins = k <= n // 2  # (B, 1, F)
    keep = ((t < n) & bins).to(dtype) * n.to(dtype).rsqrt()  # (B, T, F)
    weight = torch.where((k == 0) | (2 * k == n), 1.0, 2.0).to(dtype) * bins  # (B, 1, F)
    return DFTBases(angle.cos() * keep, angle.sin() * keep, bins[:, 0], weight[:, 0])


def rdft(x: Tensor, bases: DFTBases) -> tuple[Tensor, Tensor]:
    """``torch.fft.rfft(x[b, :, :n_b], norm="ortho")`` of every video: (B, D, T) -> real, imaginary (B, D, F)."""
    return x @ bases.cos, -(x @ bases.sin)


def irdft(real: Tensor, imag: Tensor, bases: DFTBases) -> Tensor:
    """``torch.fft.irfft(spec, n=n_b, norm="ortho")`` of every video, zero beyond n_b: (B, D, F) x 2 -> (B, D, T).

    As in ``irfft``, the imaginary parts of bin 0 and of bin n / 2 are ignored (their sines vanish)."""
    w = bases.weight[:, None, :]  # (B, 1, F)
    return (real * w) @ bases.cos.transpose(1, 2) - (imag * w) @ bases.sin.transpose(1, 2)


SpectrumWeights = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def filter_dft(x: Tensor, lengths: Tensor, weights: SpectrumWeights) -> Tensor:
    """The global filters' irfft(W * rfft(x)) of every video over its first n_b steps: (B, D, T) -> (B, D, T).

    ``weights(real, imag, bins)`` computes W's real and imaginary parts (B, D, F) from X's, ``bins`` (B, 1, F)
    being 1 where video b has bin k and 0 beyond (X is 0 there too)."""
    bases = dft_bases(lengths, x.shape[-1], x.dtype)
    real, imag = rdft(x, bases)  # (B, D, F) each
    w_real, w_imag = weights(real, imag, bases.bins[:, None, :].to(x.dtype))
    return irdft(real * w_real - imag * w_imag, real * w_imag + imag * w_real, bases)
