"""Model benchmark on a THUMOS14-sized input (T = 2304 steps, C = 2048 channels, the paper's Table 15 setting).

Prints: parameter count, inference latency (median of repeated runs; model alone and with post-processing),
training step time (batch of 2, forward + backward + AdamW step), the forward FLOPs, and the achieved FLOP/s
as a share of this machine's measured fp32 matmul peak.

Then, for the THUMOS14 I3D config (configs/thumos14_i3d.yaml, ``--scaling-config``), the model forward latency
(batch 1, no grad; min / median of ``--scaling-repeats`` runs after one warm-up) and its peak memory at each of
``--lengths`` (default 2304, 9216 and 36864 steps), each length in a fresh subprocess so that peaks do not mix:
the RSS just before the first forward (model and input resident), the peak RSS during the forwards (Linux
VmHWM, reset just before them; ``resource.getrusage`` ru_maxrss elsewhere) and the growth of the peak over the
RSS before, i.e. the forward's own peak working memory (on CUDA also ``torch.cuda.max_memory_allocated`` over
what was allocated before). ``--lengths`` with no value skips this.

    python bench/bench_model.py [--device cpu|cuda] [--repeats 5] [--length 2304] [--input-dim 2048]
        [--threads N] [--lengths 2304 9216 36864] [--scaling-repeats 3]

With ``--variants``: instead, the parameter count of every variant of the ablation specs (ablations/table*.yaml)
in the THUMOS14 I3D setting (configs/thumos14_i3d.yaml with each variant's overrides), encoder and decoder apart.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cltdr.ablate import format_value, load_spec, variant_config
from cltdr.config import config_from_dict, load_config
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


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux) in bytes, or None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_bytes() -> int:
    """This process's resident set size now (0 where unknown)."""
    return _proc_status_bytes("VmRSS") or 0


def _peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    On Linux VmHWM, the high-water mark of this address space. Not ``ru_maxrss``: Linux carries a process's
    ru_maxrss over ``execve``, so a fresh subprocess starts with its parent's peak (here: the parent's training
    step) and would report that instead of its own. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``5`` into /proc/self/clear_refs); whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe_length(config: Path, length: int, input_dim: int, classes: int, device: torch.device, repeats: int) -> dict:
    """Run in a fresh process: forward latency and peak memory of ``config``'s model on one video of ``length``."""
    torch.manual_seed(0)
    cfg = load_config(config, [f"dataset.input_dim={input_dim}"])
    model = build_detector(cfg, classes).to(device).eval()
    T = -(-length // cfg.divisor) * cfg.divisor
    x = torch.randn(1, input_dim, T, device=device)
    mask = torch.ones(1, T, dtype=torch.bool, device=device)
    gc.collect()
    reset = _reset_peak_rss()  # so that the peak below is the forwards' own, not that of building the model
    rss_before, peak_before = _rss_bytes(), _peak_rss_bytes()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        lat = timed(lambda: model(x, mask), device, repeats)  # one warm-up run, then ``repeats`` timed ones
    peak_after = _peak_rss_bytes()
    out = {
        "length": T,
        "forward_ms": [1e3 * min(lat), 1e3 * statistics.median(lat)],
        "rss_before_MiB": rss_before / 2**20,
        "peak_rss_MiB": peak_after / 2**20,
        # Without the reset the peak is a high-water mark of the whole process: when the forwards did not raise
        # it, their own peak lay at or below it and the growth is an upper bound ("exact": False).
        "forward_peak_growth_MiB": (peak_after - rss_before) / 2**20,
        "exact": reset or peak_after > peak_before,
    }
    if device.type == "cuda":
        out["cuda_forward_peak_MiB"] = (torch.cuda.max_memory_allocated(device) - cuda_before) / 2**20
    return out


def length_scaling(args) -> list[dict]:
    """``probe_length`` for each of ``args.lengths``, each in a fresh subprocess; prints a table as it goes."""
    print(
        f"\nforward (batch 1, no grad) and peak memory by length, {args.scaling_config.name}, "
        f"C={args.input_dim}, K={args.classes}, {args.device}, one process per length, "
        f"{args.scaling_repeats} timed runs after 1 warm-up:"
    )
    header = f"{'T':>7}  {'forward ms min / med':>22}  {'RSS before':>10}  {'peak RSS':>10}  {'fwd peak growth':>15}"
    cuda = torch.device(args.device).type == "cuda"
    print(header + ("  cuda fwd peak" if cuda else "") + "   (MiB)")
    rows = []
    for length in args.lengths:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--probe",
            str(length),
            "--device",
            args.device,
            "--input-dim",
            str(args.input_dim),
            "--classes",
            str(args.classes),
            "--scaling-config",
            str(args.scaling_config),
            "--scaling-repeats",
            str(args.scaling_repeats),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            print(f"{length:>7}  failed (exit {proc.returncode}): {tail[0]}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        growth = ("" if row["exact"] else "<= ") + f"{row['forward_peak_growth_MiB']:.0f}"
        line = (
            f"{row['length']:>7}  {row['forward_ms'][0]:>10.1f} / {row['forward_ms'][1]:<9.1f}  "
            f"{row['rss_before_MiB']:>10.0f}  {row['peak_rss_MiB']:>10.0f}  {growth:>15}"
        )
        if cuda:
            line += f"  {row['cuda_forward_peak_MiB']:>13.0f}"
        print(line, flush=True)
    return rows


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
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument(
        "--lengths",
        type=int,
        nargs="*",
        default=[2304, 9216, 36864],
        help="lengths of the latency / peak-memory table (none: skip it)",
    )
    p.add_argument(
        "--scaling-config",
        type=Path,
        default=ROOT / "configs" / "thumos14_i3d.yaml",
        help="config of the model in the latency / peak-memory table",
    )
    p.add_argument("--scaling-repeats", type=int, default=3, help="timed forwards per length (after 1 warm-up)")
    p.add_argument("--probe", type=int, default=None, help=argparse.SUPPRESS)  # internal: one length, JSON out
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe is not None:
        print(
            json.dumps(
                probe_length(
                    args.scaling_config,
                    args.probe,
                    args.input_dim,
                    args.classes,
                    torch.device(args.device),
                    args.scaling_repeats,
                )
            )
        )
        return
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
    figures = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "input": [args.length, args.input_dim],
        "parameters_M": count_parameters(model) / 1e6,
    }

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
    if args.lengths:
        figures["length_scaling"] = length_scaling(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
