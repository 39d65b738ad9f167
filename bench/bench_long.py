"""Hours-long videos: time and peak memory of `cltdr detect` by video length, and windowed vs whole-video mAP.

    python bench/bench_long.py [--lengths 2304 27000 270000] [--channels 2048] [--threads 2] [--whole]
    python bench/bench_long.py --accuracy RUN_DIR [--min-steps 20000]

Time and memory (default): a run of the THUMOS14 I3D model (configs/thumos14_i3d.yaml, random weights, 20
classes) is written to a temporary folder, and for each length T a (T, C) float32 ``.npy`` of random features
beside it (written in chunks). Each length is one `cltdr detect RUN FEATS.npy` in a fresh process; the table
gives its wall time and its peak RSS (VmHWM of that process, Linux), and the time per 1,000 steps. ``--whole``
sets ``test.window`` beyond every length: the whole video at once, as before
windowed inference existed.

Accuracy (``--accuracy RUN_DIR``, a trained run): the run's test videos are laid end to end (in two different
orders) into long videos of at least ``--min-steps`` input steps, with their actions moved along; the mAP of
those long videos is measured with windowed inference (the run's ``test.window``, default 4 x max_seq_len) and
with the whole video at once.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The child reports its own peak from /proc (VmHWM belongs to its address space): ru_maxrss would not do, as
# Linux carries the parent's peak over a fork into the child's (here: the parent's peak from writing the features).
CHILD = (
    "import sys\n"
    "from cltdr.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
    "print('PEAK_RSS_KB', peak, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


# ------------------------------------------------------------------------------------------- time and memory
def random_run(folder: Path, channels: int, whole: bool) -> Path:
    """A run directory of the THUMOS14 I3D model with random weights (seed 0)."""
    from cltdr.config import config_from_dict
    from cltdr.model import build_detector
    from cltdr.runs import RunDir, save_checkpoint
    from cltdr.utils.io import atomic_write_text

    data = yaml.safe_load((ROOT / "configs" / "thumos14_i3d.yaml").read_text())
    data["dataset"].update(
        annotation_file=str(folder / "none.json"),
        feat_dir=str(folder),
        input_dim=channels,
        class_names=[f"class_{k}" for k in range(20)],
        default_fps=30.0,
    )
    if whole:
        data.setdefault("test", {})["window"] = 10**9
    cfg = config_from_dict(data, "bench_long")
    torch.manual_seed(0)
    model = build_detector(cfg, 20)
    run = RunDir(folder / "run")
    atomic_write_text(run.config, cfg.to_yaml())
    save_checkpoint(run.last, {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "ema": None})
    return run.root


def write_features(path: Path, steps: int, channels: int, chunk: int = 8192) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(steps, channels))
    rng = np.random.default_rng(0)
    for start in range(0, steps, chunk):
        stop = min(start + chunk, steps)
        out[start:stop] = rng.standard_normal((stop - start, channels), dtype=np.float32)
    out.flush()
    del out


def time_and_memory(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_long_") as tmp:
        folder = Path(tmp)
        run = random_run(folder, args.channels, args.whole)
        rows = []
        for steps in args.lengths:
            feats = folder / f"long_{steps}.npy"
            write_features(feats, steps, args.channels)
            cmd = [
                sys.executable,
                "-c",
                CHILD,
                "detect",
                str(run),
                str(feats),
                "--out",
                str(folder / "pred.json"),
                "--quiet",
                "--device",
                "cpu",
            ]
            env = {"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, **_python_env()})
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"cltdr detect failed at T={steps}:\n{proc.stderr[-3000:]}")
            peak = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")))
            rows.append((steps, feats.stat().st_size / 2**30, seconds, peak / 2**20))
            feats.unlink()
            print(f"T={steps}: {seconds:.1f} s, peak RSS {peak / 2**20:.2f} GB", flush=True)
    mode = (
        "whole video (test.window beyond T)" if args.whole else "windowed (test.window default: 4 x 2304, overlap 2304)"
    )
    print(f"\n`cltdr detect`, THUMOS14 I3D model, random weights, C={args.channels}, {args.threads} threads, {mode}")
    print("| T (steps) | features file | time | time / 1k steps | peak RSS |")
    print("|---:|---:|---:|---:|---:|")
    for steps, size, seconds, peak in rows:
        print(f"| {steps:,} | {size:.2f} GB | {seconds:.1f} s | {1000 * seconds / steps:.2f} s | {peak:.2f} GB |")
    if len(rows) > 1:
        (s0, _, t0, _), (s1, _, t1, _) = rows[-2], rows[-1]
        print(f"\ntime ratio T={s1:,} / T={s0:,}: {t1 / t0:.2f} (length ratio {s1 / s0:.1f})")


def _python_env() -> dict:
    import os

    keep = ("PYTHONPATH", "VIRTUAL_ENV", "HOME", "LANG", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


# ---------------------------------------------------------------------------------------------------- accuracy
def accuracy(args) -> None:
    from cltdr.data.build import class_names, feature_store, load_split
    from cltdr.evaluation import evaluate_map
    from cltdr.inference.runner import detect, postprocess_options
    from cltdr.runs import load_trained_model

    torch.set_num_threads(args.threads)
    cfg, model, device = load_trained_model(args.accuracy, device="cpu")
    store = feature_store(cfg)
    split = load_split(cfg, cfg.dataset.test_subset)
    fps = {v.fps for v in split.videos}
    if len(fps) != 1 or store.resize_to is not None or store.downsample_rate != 1:
        raise SystemExit("--accuracy needs test videos of one frame rate, without resizing or downsampling")
    (rate,) = fps
    feats = {v.video_id: store.read(v.video_id, v.subset) for v in split.videos}
    step_s = store.feat_stride / rate
    names = class_names(cfg)
    database, long_feats = {}, {}
    total = sum(f.shape[0] for f in feats.values())
    repeats = -(-args.min_steps // total)
    for n in range(2):
        order = [v for _ in range(repeats) for v in random.Random(n).sample(split.videos, len(split.videos))]
        parts, annotations, offset = [], [], 0
        for v in order:
            parts.append(feats[v.video_id])
            for (s, e), label in zip(v.segments, v.labels):
                annotations.append({"label": names[label], "segment": [s + offset * step_s, e + offset * step_s]})
            offset += feats[v.video_id].shape[0]
        video_id = f"long_{n}"
        x = np.concatenate(parts)
        long_feats[video_id] = torch.from_numpy(x.T.copy())
        duration = store.stored_grid(rate).span_seconds(x.shape[0])
        database[video_id] = {"subset": "long", "duration": duration, "fps": rate, "annotations": annotations}
    gt = {"database": database}
    opts, window = postprocess_options(cfg), cfg.inference_window()
    grid = store.stored_grid(rate)
    print(
        f"{len(database)} long videos of {[f.shape[1] for f in long_feats.values()]} steps "
        f"({sum(len(d['annotations']) for d in database.values())} actions); window {window[0]}, overlap "
        f"{window[1]}"
    )
    results = {}
    for mode, win in (("windowed", window), ("whole video", None)):
        start = time.perf_counter()
        res = {
            vid: detect(model, f, grid, database[vid]["duration"], opts, names, device, window=win)
            for vid, f in long_feats.items()
        }
        seconds = time.perf_counter() - start
        results[mode] = (evaluate_map(gt, {"results": res}, "long", cfg.test.tiou_thresholds), seconds)
    print("| inference | " + " | ".join(f"mAP@{t:g}" for t in cfg.test.tiou_thresholds) + " | average | time |")
    print("|---|" + "---:|" * (len(cfg.test.tiou_thresholds) + 2))
    for mode, (m, seconds) in results.items():
        cells = " | ".join(f"{100 * v:.2f}" for v in m.mAP)
        print(f"| {mode} | {cells} | {100 * m.average_mAP:.2f} | {seconds:.1f} s |")
    diff = 100 * (results["windowed"][0].average_mAP - results["whole video"][0].average_mAP)
    print(f"\nwindowed - whole: {diff:+.2f} points average mAP")
    if args.json:
        args.json.write_text(
            json.dumps({k: {"average_mAP": m.average_mAP, "seconds": s} for k, (m, s) in results.items()}, indent=2)
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[2304, 27000, 270000])
    p.add_argument("--channels", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--whole", action="store_true", help="no windowing: the whole video at once")
    p.add_argument("--accuracy", type=Path, default=None, metavar="RUN_DIR", help="windowed vs whole mAP of a run")
    p.add_argument("--min-steps", type=int, default=20000, help="--accuracy: input steps of each long video")
    p.add_argument("--json", type=Path, default=None, help="--accuracy: also write the figures here")
    args = p.parse_args()
    accuracy(args) if args.accuracy else time_and_memory(args)


if __name__ == "__main__":
    main()
