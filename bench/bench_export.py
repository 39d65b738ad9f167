"""Exported-network latency: PyTorch eager vs TorchScript vs ONNX Runtime on the CPU, THUMOS14-sized input.

The default model (the THUMOS14 I3D setting: C = 2048, 20 classes, 6 levels) with random weights, exported with
``cltdr.deploy.export_network`` (the files ``cltdr export-model`` writes), each run on one video of ``--length``
steps (default 2304, the paper's Table 15 setting) up to the pre-NMS prediction (``Detector.predict_dense``).
Rows: eager PyTorch (the FFT branch as torch.fft); eager with the FFT as the DFT matrix products the files hold
(what the formulation itself costs); the TorchScript file; the ONNX file in ONNX Runtime. Each: min and median
of ``--repeats`` runs after one warm-up, and the largest difference from eager's output.

    python bench/bench_export.py [--threads 1] [--length 2304] [--repeats 5] [--input-dim 2048]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import onnxruntime
import torch

from cltdr.config import config_from_dict
from cltdr.deploy import export_network, load_exported
from cltdr.model import build_detector
from cltdr.model.gmg import GlobalFilter


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--length", type=int, default=2304)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--input-dim", type=int, default=2048)
    p.add_argument("--classes", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = [f"class{k}" for k in range(args.classes)]
    cfg = config_from_dict(
        {"dataset": {"annotation_file": "-", "feat_dir": "-", "input_dim": args.input_dim, "class_names": names}}
    )
    model = build_detector(cfg, args.classes).eval()
    T = -(-args.length // cfg.divisor) * cfg.divisor
    x = torch.randn(1, args.input_dim, T)
    mask = torch.ones(1, T, dtype=torch.bool)

    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        files = {fmt: export_network(model, cfg, fmt, Path(tmp) / f"model.{fmt}") for fmt in ("torchscript", "onnx")}
        torchscript = load_exported(files["torchscript"])
        onnx = load_exported(files["onnx"], threads=args.threads)
        reference = model.predict_dense(x, mask)
        fft_forward = GlobalFilter.forward

        def eager_dft():
            GlobalFilter.forward = GlobalFilter.forward_dft  # type: ignore[method-assign]  # this row only
            try:
                return model.predict_dense(x, mask)
            finally:
                GlobalFilter.forward = fft_forward  # type: ignore[method-assign]

        rows = [
            ("PyTorch eager (torch.fft)", lambda: model.predict_dense(x, mask)),
            ("PyTorch eager (FFT as DFT matmuls)", eager_dft),
            ("TorchScript file", lambda: torchscript.run(x, mask)),
            (f"ONNX Runtime {onnxruntime.__version__} file", lambda: onnx.run(x, mask)),
        ]
        print(
            f"T = {T}, C = {args.input_dim}, K = {args.classes}, CPU, {args.threads} thread(s), "
            f"torch {torch.__version__}, batch 1, up to the pre-NMS prediction"
        )
        print("| runtime | min ms | median ms | max abs diff from eager: scores | segments (steps) |")
        print("|---|---:|---:|---:|---:|")
        for name, fn in rows:
            out = fn()
            diffs = [(a.float() - b.float()).abs().max().item() for a, b in zip(reference[:2], out[:2])]
            lat = timed(fn, args.repeats)
            print(
                f"| {name} | {1e3 * min(lat):.0f} | {1e3 * statistics.median(lat):.0f} | {diffs[0]:.1e} | "
                f"{diffs[1]:.1e} |"
            )
        print(f"largest |segment| value: {reference[1].abs().max().item():.0f} steps")


if __name__ == "__main__":
    main()
