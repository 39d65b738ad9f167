"""The names of the hardware that measurements and trainings are recorded with."""

from __future__ import annotations

import platform

import torch

from cltdr.utils import hardware

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    monkeypatch.setattr(hardware, "Path", lambda _: tmp_path / "cpuinfo")
    assert hardware.processor_name() == "Intel(R) Xeon(R) Processor"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert hardware.device_name("cpu") == "Intel(R) Xeon(R) Processor (1 thread)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert hardware.device_name(torch.device("cpu")) == "Intel(R) Xeon(R) Processor (2 threads)"


def test_without_cpuinfo_the_platform_names_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "Path", lambda _: tmp_path / "absent")
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert hardware.processor_name("cpu") == "arm"
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "")
    assert hardware.processor_name("cpu") == "unknown CPU"


def test_a_gpu_is_named_by_its_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    assert hardware.processor_name("cuda") == "NVIDIA H200"
    assert hardware.device_name("cuda:0") == "NVIDIA H200 (CUDA)"
