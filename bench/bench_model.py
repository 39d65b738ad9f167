"""Model benchmark on a THUMOS14-sized input (T = 2304 steps, C = 2048 channels, the paper's Table 15 setting).

Prints: parameter count, inference latency (median of repeated runs; model alone and with post-processing),
training step time (batch of 2, forward + backward + AdamW step), the forward FLOPs, and the achieved FLOP/s
as a share of this machine's measured fp32 matmul peak.

    python bench/bench_model.py [--device cpu|cuda] [--repeats 5] [--length 2304] [--input-dim 2048]

With ``--variants``: instead, the parameter count of every variant of the ablation specs (ablations/table*.yaml)
in the THUMOS14 I3D setting (configs/thumos14_i3d.yaml with each variant's overrides), encoder and decoder apart.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from pathlib import Path

from cltdr.ablate import format_value, load_spec, variant_config
from cltdr.config import config_from_dict
from cltdr.inference.postprocess import PostprocessOptions, postprocess_video
from cltdr.model import build_detector, count_parameters


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return out


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul FLOP/s (best of ``repeats``) of an n x n x n product."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = timed(lambda: a @ b, device, repeats, warmup=2)
    return 2 * n**3 / min(times)


def fft_flops(model, length: int) -> float:
    """FlopCounterMode does not count FFTs: add 2 x 2.5 N log2 N real FLOPs per channel (rfft + irfft)."""
    from cltdr.model.gmg import GlobalFilter

    total, T = 0.0, length
    blocks = [m for m in model.modules() if isinstance(m, GlobalFilter)]
    stem = len(model.encoder.stem)
    for i, block in enumerate(blocks):
        t = T if i < stem else T // 2 ** (i - stem + 1)
        dim = block.conv1.in_channels // 2
        total += 2 * 2.5 * t * math.log2(max(t, 2)) * dim
    return total


ROOT = Path(__file__).resolve().parents[1]


def variant_parameters(specs: list[Path], base: Path, classes: int) -> None:
    """Print one row per distinct variant of ``specs``, built on ``base``: parameters of model, encoder, decoder."""
    rows, seen = [], {}
    for path in specs:
        spec = load_spec(path).model_copy(update={"base": base, "set": []})
        for name, overrides in spec.variants.items():
            key = json.dumps(overrides, sort_keys=True)
            if key in seen:
                seen[key][1].append(path.stem.split("_")[0])
                continue
            model = build_detector(variant_config(spec, name), classes)
            seen[key] = (name, [path.stem.split("_")[0]])
            counts = [count_parameters(m) / 1e6 for m in (model, model.encoder, model.decoder)]
            label = ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())
            rows.append((key, counts, label or "(default CLTDR-GMG)"))
    print(f"parameters (M) in the setting of {base.relative_to(ROOT)}, {classes} classes")
    print(f"{'model':>7} {'encoder':>7} {'decoder':>7}  {'tables':<22} variant")
    for key, (total, enc, dec), label in rows:
        tables = ",".join(t.replace("table", "") for t in seen[key][1])
        print(f"{total:7.2f} {enc:7.2f} {dec:7.2f}  {tables:<22} {label}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--length", type=int, default=2304)
    p.add_argument("--input-dim", type=int, default=2048)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--variants", action="store_true", help="parameter counts of every ablation variant instead")
    p.add_argument("--specs", nargs="+", type=Path, default=sorted((ROOT / "ablations").glob("table*.yaml")))
    p.add_argument("--base", type=Path, default=ROOT / "configs" / "thumos14_i3d.yaml")
    args = p.parse_args()
    if args.variants:
        variant_parameters(args.specs, args.base.resolve(), args.classes)
        return
    device = torch.device(args.device)
    torch.manual_seed(0)

    cfg = config_from_dict({"dataset": {"annotation_file": "-", "feat_dir": "-", "input_dim": args.input_dim}})
    model = build_detector(cfg, args.classes).to(device)
    T = -(-args.length // cfg.divisor) * cfg.divisor
    x = torch.randn(1, args.input_dim, T, device=device)
    mask = torch.ones(1, T, dtype=torch.bool, device=device)
    figures = {"device": str(device), "threads": torch.get_num_threads(), "input": [args.length, args.input_dim],
               "parameters_M": count_parameters(model) / 1e6}

    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(x, mask)
    flops = counter.get_total_flops() + fft_flops(model, T)
    figures["forward_GFLOPs"] = flops / 1e9

    with torch.no_grad():
        lat = timed(lambda: model(x, mask), device, args.repeats)
        scores, segments = model.predict(x, mask)[0]
        scores, segments = [s.cpu() for s in scores], [s.cpu() for s in segments]
    post = timed(lambda: postprocess_video(scores, segments, PostprocessOptions()), torch.device("cpu"), args.repeats)
    figures["inference_ms_median"] = 1e3 * statistics.median(lat)
    figures["postprocess_ms_median"] = 1e3 * statistics.median(post)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xb = torch.randn(2, args.input_dim, T, device=device)
    mb = torch.ones(2, T, dtype=torch.bool, device=device)
    segs = [torch.tensor([[100.0, 180.0], [900.0, 960.0], [1500.0, 1900.0]], device=device)] * 2
    labels = [torch.tensor([0, 3, 7], device=device)] * 2

    def step():
        opt.zero_grad(set_to_none=True)
        model.loss(xb, mb, segs, labels)["loss"].backward()
        opt.step()

    figures["train_step_ms_median"] = 1e3 * statistics.median(timed(step, device, max(2, args.repeats // 2)))
    peak = matmul_peak(device)
    figures["matmul_peak_GFLOPs"] = peak / 1e9
    achieved = flops / statistics.median(lat)
    figures["inference_GFLOPs_per_s"] = achieved / 1e9
    figures["share_of_matmul_peak"] = achieved / peak

    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
