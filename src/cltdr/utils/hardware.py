"""What hardware a measurement ran on. Latencies do not carry from one processor model to another, and neither do
CPU training's scores: they are deterministic on one CPU model, not across models (nor on a GPU)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def processor_name(device: torch.device | str = "cpu") -> str:
    """The model of the processor that runs ``device``: the GPU's for CUDA, else the CPU's (from /proc/cpuinfo on
    Linux, else what the platform says)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """``device`` for a table of timings: the GPU's model and "(CUDA)", or the CPU's model and torch's threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{processor_name(device)} (CUDA)"
    threads = torch.get_num_threads()
    return f"{processor_name(device)} ({threads} thread{'s' if threads > 1 else ''})"
