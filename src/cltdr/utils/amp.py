"""Mixed precision: the ``amp`` settings of training and inference as autocast contexts."""

from __future__ import annotations

import contextlib
from typing import ContextManager, Literal

import torch

Amp = Literal["none", "bf16", "fp16"]
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> ContextManager:
    """Autocast to ``amp``'s dtype on ``device`` ('none': no context, fp32 throughout). The FFT branch and the
    losses leave it for fp32 themselves (``GlobalFilter``, ``SpectralFilter``, ``Detector.loss``)."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp {amp!r}: expected 'none', 'bf16' or 'fp16'")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])
