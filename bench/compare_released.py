"""Side-by-side benchmark of cltdr's CLTDR-GMG against the authors' released code (github.com/LiQiang0307/CLTDR-GMG).

    python bench/compare_released.py --released PATH [--threads 2] [--repeats 5] [--length 2304] [--channels 2048]
        [--classes 20] [--cltdr-set KEY=VALUE ...] [--build-nms]

PATH is a checkout of the released repository; cltdr never depends on it. Without one (no --released, or a
path that is not such a checkout) the script says so and exits with status 0 after printing "skipped".
``--tridet PATH`` measures TriDet's code (github.com/dingfengshi/TriDet) in its place: the released code is built
on it, so the same config loader and ``make_meta_arch`` build its configs/thumos_i3d.yaml, and every figure
below reads the same with "TriDet" for "released".

Both models get random weights (fixed seed) and the same synthetic input: one video of T steps x C channels for
inference, a batch of two with the same synthetic segments for training. The released model is built by their
own code only: their config loader (libs/core/config.py) on their configs/thumos_i3d_focalloss.yaml, and
``libs.modeling.make_meta_arch``. cltdr's model is configs/thumos14_i3d.yaml through ``cltdr.config.load_config``
and ``cltdr.model.build_detector``; ``--cltdr-set`` adds a second cltdr layout (a third column), e.g. the released
architecture itself (``model.variant=released model.ffn_dim=768 test.voting_iou=null``) or the wider paper one:

    --cltdr-set model.ffn_dim=768 model.cltdr.depthwise=false model.cltdr.depthwise_up=false \
                model.cltdr.shared_refine=false model.cltdr.refine_depthwise=false

Figures (min / median over --repeats runs after one warm-up run of each system; the systems run interleaved,
repeat by repeat, so that machine noise hits them alike; ratio = cltdr median / released median):

  forward      network forward, batch 1, no grad. cltdr: ``model(x, mask)``. Released: their ``forward`` in eval
               mode (their batching in ``preprocessing``, backbone, neck, heads, point generator) with their
               ``inference`` replaced, on the instance, by a no-op, so nothing is decoded.
  decode       forward + decoding to pre-NMS candidates, batch 1, no grad. cltdr: ``raw_predictions`` +
               ``select_candidates`` (threshold, per-level top-k, minimum length). Released: their ``forward`` in
               eval mode with only their ``postprocessing`` (move to CPU, batched (Soft-)NMS, grid -> seconds)
               replaced, on the instance, by a pass-through: everything up to and including their
               ``inference_single_video`` decoding of every level runs, NMS does not.
  end to end   cltdr: ``cltdr.inference.runner.detect`` (model, decoding, Soft-NMS, result entries in seconds).
               Released: their plain ``forward`` in eval mode, only when their compiled NMS extension
               (nms_1d_cpu, built by their libs/utils/setup.py, or by --build-nms) is importable; otherwise n/a.
  train step   batch 2: zero_grad, forward + loss, backward, AdamW step (lr 1e-4, weight decay 0.035, their
               THUMOS14 values). cltdr: ``model.loss(feats, mask, segments, labels)["loss"]``. Released: their
               ``forward`` in training mode on a video_list of dicts as their THUMOS14 dataset yields them,
               ``["final_loss"]``. Neither side clips gradients, keeps an EMA or steps a scheduler here.

Also: parameters, forward FLOPs (torch FlopCounterMode on one forward, FFTs added at 2.5 N log2 N per real
transform), and the achieved FLOP/s of each forward as a share of this machine's fp32 peak: the best rate of a few
n x n x n products and of the models' own dominant op, a 512 -> 512 kernel-3 conv over 4608 steps (oneDNN's convs
can beat MKL's square products, and a share above 100% would say nothing), at the same thread count.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from released_code import (  # noqa: E402
    RELEASED_CONFIG,
    RELEASED_FILES,
    build_nms,
    checkout_problem,
    files_problem,
    import_released,
)

TRIDET_CONFIG = "configs/thumos_i3d.yaml"
TRIDET_FILES = ("libs/core/config.py", "libs/modeling/meta_archs.py", "libs/utils/nms.py", TRIDET_CONFIG)

# The synthetic actions at T = 2304 (grid steps), scaled with T; one list per video of the training batch.
SEGMENTS_2304 = ([[100.0, 180.0], [900.0, 960.0], [1500.0, 1900.0]], [[300.0, 340.0], [1200.0, 1500.0]])
LABELS = ([0, 3, 7], [1, 12])
FPS, FEAT_STRIDE, NUM_FRAMES = 30.0, 4, 16  # THUMOS14 I3D grid (both configs: feat_stride 4, num_frames 16)


# ------------------------------------------------------------------------------------------ the released code
def skip(message: str, expected: str) -> None:
    print(f"compare_released: {message}.")
    print(f"  expected {expected}")
    print("skipped")
    sys.exit(0)


def tridet_problem(path: Path) -> str | None:
    """Why ``path`` is not a checkout of TriDet's code, or None when it is."""
    problem = files_problem(path, TRIDET_FILES)
    if problem:
        return problem
    if 'register_meta_arch("TriDet")' not in (path / "libs/modeling/meta_archs.py").read_text(errors="replace"):
        return f"{path}/libs/modeling/meta_archs.py registers no TriDet meta arch"
    return None


# name -> (its THUMOS14 I3D config, why a path is not its checkout, its repository, the files a checkout needs)
RIVALS = {
    "released": (RELEASED_CONFIG, checkout_problem, "https://github.com/LiQiang0307/CLTDR-GMG", RELEASED_FILES),
    "tridet": (TRIDET_CONFIG, tridet_problem, "https://github.com/dingfengshi/TriDet", TRIDET_FILES),
}


def build_released(modeling, config, path: Path, config_file: str, T: int, C: int, K: int, seed: int):
    """Their THUMOS14 I3D model; the config keys changed to fit the requested input are returned as notes."""
    cfg = config.load_config(str(path / config_file))
    notes = []
    for key, value in (("input_dim", C), ("num_classes", K), ("max_seq_len", T)):
        if cfg["dataset"][key] != value:
            notes.append(f"their dataset.{key} {cfg['dataset'][key]} -> {value}")
        cfg["dataset"][key] = value
        cfg["model"][key] = value  # what their _update_config derives from the dataset section
    torch.manual_seed(seed)
    model = modeling.make_meta_arch(cfg["model_name"], **cfg["model"])
    if T % model.max_div_factor:
        raise ValueError(f"length {T} is not a multiple of their max_div_factor {model.max_div_factor}")
    return model, cfg, notes


@contextmanager
def replaced(module: torch.nn.Module, **methods):
    """Shadow some methods of one model instance (not its class) for the duration of the block."""
    for name, fn in methods.items():
        setattr(module, name, fn)
    try:
        yield
    finally:
        for name in methods:
            delattr(module, name)


def released_video(feats: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, vid: str) -> dict:
    """One item as their libs/datasets/thumos14.py yields it: feats (C, T), segments (N, 2) float32 on the feature
    grid, labels (N,) int64, and the video's meta data."""
    T = feats.shape[1]
    return {
        "video_id": vid,
        "feats": feats,
        "segments": segments,
        "labels": labels,
        "fps": FPS,
        "duration": (T * FEAT_STRIDE + NUM_FRAMES) / FPS,
        "feat_stride": FEAT_STRIDE,
        "feat_num_frames": NUM_FRAMES,
    }


class Released:
    """Their model (the released code's, or TriDet's with ``name`` 'tridet') behind the figures' methods."""

    def __init__(self, name: str, model, cfg, real_nms: bool, feats, train_feats, segments, labels):
        self.name, self.model, self.cfg, self.real_nms = name, model, cfg, real_nms
        self.params = sum(p.numel() for p in model.parameters())
        self.video = [released_video(feats, segments[0], labels[0], "synthetic")]
        self.batch = [
            released_video(f, s, l, f"synthetic_{i}") for i, (f, s, l) in enumerate(zip(train_feats, segments, labels))
        ]
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.035)

    @torch.no_grad()
    def forward(self):
        self.model.eval()
        with replaced(self.model, inference=lambda *args, **kwargs: None):
            return self.model(self.video)

    @torch.no_grad()
    def decode(self):
        self.model.eval()
        with replaced(self.model, postprocessing=lambda results: results):
            return self.model(self.video)

    @torch.no_grad()
    def end_to_end(self):
        self.model.eval()
        return self.model(self.video)

    def train_step(self):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.model(self.batch)["final_loss"].backward()
        self.opt.step()

    def candidates(self) -> int:
        return int(self.decode()[0]["scores"].numel())


# ----------------------------------------------------------------------------------------------------- cltdr
class Cltdr:
    def __init__(self, name, cfg, seed: int, K: int, feats, train_feats, segments, labels):
        from cltdr.data.grid import FeatureGrid
        from cltdr.inference.runner import postprocess_options
        from cltdr.model import build_detector, count_parameters

        torch.manual_seed(seed)
        self.name, self.cfg = name, cfg
        self.model = build_detector(cfg, K)
        self.params = count_parameters(self.model)
        self.feats = feats
        self.x, self.mask = feats[None], torch.ones(1, feats.shape[1], dtype=torch.bool)
        self.xb = train_feats
        self.mb = torch.ones(train_feats.shape[0], train_feats.shape[2], dtype=torch.bool)
        self.segments, self.labels = list(segments), list(labels)
        self.opts = postprocess_options(cfg)
        self.grid = FeatureGrid(fps=FPS, feat_stride=FEAT_STRIDE, num_frames=NUM_FRAMES)
        self.duration = (feats.shape[1] * FEAT_STRIDE + NUM_FRAMES) / FPS
        self.class_names = [f"class_{k}" for k in range(K)]
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.035)

    @torch.no_grad()
    def forward(self):
        self.model.eval()
        return self.model(self.x, self.mask)

    @torch.no_grad()
    def decode(self):
        from cltdr.inference.postprocess import select_candidates
        from cltdr.inference.runner import raw_predictions

        return select_candidates(*raw_predictions(self.model, self.feats, torch.device("cpu")), self.opts)

    def end_to_end(self):
        from cltdr.inference.runner import detect

        return detect(
            self.model, self.feats, self.grid, self.duration, self.opts, self.class_names, torch.device("cpu")
        )

    def train_step(self):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.model.loss(self.xb, self.mb, self.segments, self.labels)["loss"].backward()
        self.opt.step()

    def candidates(self) -> int:
        return len(self.decode())


# ----------------------------------------------------------------------------------------------- measuring
def interleaved(fns: list, repeats: int, warmup: int = 1) -> list[list[float]]:
    """Seconds per call of each function: ``warmup`` untimed calls of each, then A, B, A, B, ... ``repeats`` times."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            gc.collect()
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return times


def _fft_flops(real_shape, dims, complex_input: bool = False) -> int:
    """2.5 N log2 N FLOPs per real transform of N points (5 N log2 N for a complex one), times the batch."""
    n = math.prod(real_shape[d] for d in dims)
    batch = math.prod(real_shape) // max(n, 1)
    per = (5.0 if complex_input else 2.5) * n * math.log2(max(n, 2))
    return int(per * batch)


def _r2c(self_shape, dim, normalization, onesided, out_shape=None, **kwargs):
    return _fft_flops(self_shape, dim)


def _c2r(self_shape, dim, normalization, last_dim_size, out_shape=None, **kwargs):
    return _fft_flops(out_shape, dim)


def _c2c(self_shape, dim, normalization, forward, out_shape=None, **kwargs):
    return _fft_flops(self_shape, dim, complex_input=True)


FFT_FLOPS = {torch.ops.aten._fft_r2c: _r2c, torch.ops.aten._fft_c2r: _c2r, torch.ops.aten._fft_c2c: _c2c}


def forward_flops(fn) -> float:
    """FLOPs of one call: FlopCounterMode's formulas (convs, matmuls, ...) plus FFTs (which it does not count)."""
    with FlopCounterMode(display=False, custom_mapping=FFT_FLOPS) as counter:
        fn()
    return float(counter.get_total_flops())


def fp32_peak(n: int, repeats: int) -> tuple[float, str]:
    """The best fp32 FLOP/s of ``repeats`` n x n x n products and of as many 512 -> 512 kernel-3 convs over 2 x
    4608 steps (after two warm-up calls of each), and which of the two it was."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w = torch.randn(2, 512, 4608), torch.randn(512, 512, 3)
    ops = {
        f"{n}^3 matmul": (lambda: a @ b, 2 * n**3),
        "512x512 k3 conv": (lambda: torch.nn.functional.conv1d(x, w, padding=1), 2 * 2 * 4608 * 512 * 512 * 3),
    }
    rates = {}
    for name, (op, flops) in ops.items():
        for _ in range(2):
            op()
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            op()
            best = min(best, time.perf_counter() - t)
        rates[name] = flops / best
    name = max(rates, key=rates.__getitem__)
    return rates[name], name


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    rival = p.add_mutually_exclusive_group()
    rival.add_argument("--released", type=Path, default=None, help="a checkout of LiQiang0307/CLTDR-GMG")
    rival.add_argument("--tridet", type=Path, default=None, help="a checkout of dingfengshi/TriDet, measured instead")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure and system (default 5)")
    p.add_argument("--length", type=int, default=2304, help="T, feature steps of the video (default 2304)")
    p.add_argument("--channels", type=int, default=2048, help="C, feature channels (default 2048)")
    p.add_argument("--classes", type=int, default=20, help="K, action classes (default 20)")
    p.add_argument("--cltdr-config", type=Path, default=ROOT / "configs" / "thumos14_i3d.yaml")
    p.add_argument(
        "--cltdr-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of a second cltdr layout, measured as a third column",
    )
    p.add_argument(
        "--build-nms",
        action="store_true",
        help="build their C++ NMS from their source (a compiler is needed; about a minute the first time), so "
        "that their end-to-end figure is measured too",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-size", type=int, default=2048, help="n of the n x n x n fp32 matmul peak (default 2048)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args()

    rival_name = "tridet" if args.tridet is not None else "released"
    config_file, checkout_check, repository, files = RIVALS[rival_name]
    path = getattr(args, rival_name)
    problem = checkout_check(path)
    expected = f"--{rival_name} PATH: a checkout of {repository} (with {', '.join(files)})"
    if problem:  # checkout_problem names a missing --released too
        skip(problem, expected)
    path = path.resolve()
    try:
        modeling, config, real_nms, notes = import_released(path)
    except Exception as e:  # a checkout whose code does not import here: nothing to compare against
        skip(f"the {rival_name} code at {path} does not import ({type(e).__name__}: {e})", expected)
    if args.build_nms and not real_nms:
        nms_problem = build_nms(path)
        real_nms = nms_problem is None
        notes = [n for n in notes if "nms_1d_cpu" not in n] if real_nms else notes  # the stub's note is void
        notes.append(nms_problem or "their NMS built from their libs/utils/csrc/nms_cpu.cpp (--build-nms)")

    from cltdr.config import load_config
    from cltdr.errors import ConfigError

    torch.set_num_threads(args.threads)
    C, K = args.channels, args.classes
    try:
        cfgs = [("cltdr", load_config(args.cltdr_config, [f"dataset.input_dim={C}"]))]
        if args.cltdr_set:
            cfgs.append(("cltdr+set", load_config(args.cltdr_config, [f"dataset.input_dim={C}", *args.cltdr_set])))
    except ConfigError as e:
        p.error(str(e))
    divisor = max(cfg.divisor for _, cfg in cfgs)
    T = -(-args.length // divisor) * divisor  # both pad to a multiple of their coarsest stride; start there
    if T != args.length:
        notes.append(f"length {args.length} rounded up to {T}, a multiple of the coarsest stride {divisor}")

    g = torch.Generator().manual_seed(args.seed)
    feats = torch.randn(C, T, generator=g)
    train_feats = torch.randn(2, C, T, generator=g)
    segments = [torch.tensor(s, dtype=torch.float32) * (T / 2304) for s in SEGMENTS_2304]
    labels = [torch.tensor(l, dtype=torch.int64) % K for l in LABELS]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
        rmodel, rcfg, rnotes = build_released(modeling, config, path, config_file, T, C, K, args.seed)
    notes += rnotes
    released = Released(rival_name, rmodel, rcfg, real_nms, feats, train_feats, segments, labels)
    systems = [released] + [Cltdr(name, cfg, args.seed, K, feats, train_feats, segments, labels) for name, cfg in cfgs]

    figures: dict[str, dict[str, object]] = {s.name: {"parameters_M": s.params / 1e6} for s in systems}
    for s in systems:
        figures[s.name]["pre_nms_candidates"] = s.candidates()

    flops = {s.name: forward_flops(s.forward) for s in systems}
    timed = {}
    for figure in ("forward", "decode", "end_to_end", "train_step"):  # training last: it changes the weights
        runnable = [s for s in systems if figure != "end_to_end" or s is not released or real_nms]
        for s, t in zip(runnable, interleaved([getattr(s, figure) for s in runnable], args.repeats)):
            timed[s.name, figure] = t
            figures[s.name][f"{figure}_ms"] = [1e3 * min(t), 1e3 * statistics.median(t)]
    peak, peak_op = fp32_peak(args.peak_size, max(3, args.repeats))
    for s in systems:
        achieved = flops[s.name] / statistics.median(timed[s.name, "forward"])
        figures[s.name].update(
            forward_GFLOPs=flops[s.name] / 1e9, forward_GFLOP_per_s=achieved / 1e9, share_of_peak=achieved / peak
        )

    # -------------------------------------------------------------------------------------------- report
    print(f"{rival_name} code ({path}, {config_file}) vs cltdr ({args.cltdr_config})")
    print(
        f"input: T={T} steps x C={C} channels, K={K} classes, random weights (seed {args.seed}); "
        f"threads {torch.get_num_threads()}; {args.repeats} timed runs per figure after 1 warm-up, interleaved"
    )
    if args.cltdr_set:
        print(f"cltdr+set: {' '.join(args.cltdr_set)}")
    cols = [s.name for s in systems]
    ratio_names = ["ratio" if c == "cltdr" else "ratio set" for c in cols[1:]]  # cltdr (+set) / released
    head = f"{'figure':<34}" + "".join(f"{c:>19}" for c in cols) + "".join(f"{r:>11}" for r in ratio_names)
    print(head)
    print("-" * len(head))

    def row(label, cells, ratios):
        print(f"{label:<34}" + "".join(f"{c:>19}" for c in cells) + "".join(f"{r:>11}" for r in ratios))

    base = figures[rival_name]
    row(
        "parameters (M)",
        [f"{figures[c]['parameters_M']:.2f}" for c in cols],
        [f"{figures[c]['parameters_M'] / base['parameters_M']:.2f}" for c in cols[1:]],
    )
    labels_ = {
        "forward": "forward, B=1 (ms)",
        "decode": "fwd + decode, no NMS (ms)",
        "end_to_end": "end to end + NMS (ms)",
        "train_step": "train step, B=2 (ms)",
    }
    for figure, label in labels_.items():
        cells, ratios = [], []
        for c in cols:
            v = figures[c].get(f"{figure}_ms")
            cells.append("n/a" if v is None else f"{v[0]:.1f} / {v[1]:.1f}")
        for c in cols[1:]:
            v, b = figures[c].get(f"{figure}_ms"), base.get(f"{figure}_ms")
            ratios.append("n/a" if v is None or b is None else f"{v[1] / b[1]:.2f}")
        row(label + " min/med", cells, ratios)
    row("pre-NMS candidates", [str(figures[c]["pre_nms_candidates"]) for c in cols], ["" for _ in cols[1:]])
    row(
        "forward GFLOPs",
        [f"{figures[c]['forward_GFLOPs']:.1f}" for c in cols],
        [f"{figures[c]['forward_GFLOPs'] / base['forward_GFLOPs']:.2f}" for c in cols[1:]],
    )
    row("forward GFLOP/s (median)", [f"{figures[c]['forward_GFLOP_per_s']:.1f}" for c in cols], ["" for _ in cols[1:]])
    row(
        "share of fp32 peak",
        [f"{100 * figures[c]['share_of_peak']:.1f} %" for c in cols],
        ["" for _ in cols[1:]],
    )
    print(
        f"fp32 peak: {peak / 1e9:.1f} GFLOP/s ({peak_op}, best of "
        f"{max(3, args.repeats)}, {torch.get_num_threads()} threads); cltdr forward {flops['cltdr'] / 1e9:.1f} "
        f"GFLOPs in {1e3 * statistics.median(timed['cltdr', 'forward']):.1f} ms = "
        f"{figures['cltdr']['forward_GFLOP_per_s']:.1f} GFLOP/s = "
        f"{100 * figures['cltdr']['share_of_peak']:.1f} % of peak"
    )

    m, c0 = rcfg["model"], cfgs[0][1]
    notes += [
        f"{rival_name} 'forward' = their forward with their inference() no-op'd; 'fwd + decode' = their forward with "
        "only their postprocessing() (CPU move, batched Soft-NMS, grid->seconds) made a pass-through",
        "cltdr 'end to end' = runner.detect (model, decoding, Soft-NMS"
        + (f" with score voting at IoU {systems[1].opts.voting_iou}" if systems[1].opts.voting_iou else "")
        + ", entries in seconds); their THUMOS14 setting (multiclass_nms) skips voting",
        f"layout: {rival_name} FFN width (sgp_mlp_dim) {m['sgp_mlp_dim']}"
        + (
            ", full convs in DeCLS / DeReg / CrossLevel, one RefineHead tower, Trident start/end heads on detached "
            "features (detach_feat=True); "
            if rival_name == "released"
            else ", classification and Trident heads on each level, no cross-level decoupling, no refinement; "
        )
        + "; ".join(
            f"{name}: model.variant released (the released architecture), model.ffn_dim {c.model.ffn_dim}"
            if c.model.variant == "released"
            else f"{name}: model.ffn_dim {c.model.ffn_dim}, cltdr.depthwise {c.model.cltdr.depthwise}, "
            f"depthwise_up {c.model.cltdr.depthwise_up}, shared_refine {c.model.cltdr.shared_refine}, "
            f"refine_depthwise {c.model.cltdr.refine_depthwise}, detach_boundary {c.model.cltdr.detach_boundary}"
            for name, c in cfgs
        ),
        f"{rival_name} training forward adds N(0, {m['input_noise']}^2) input noise itself (cltdr: data loader, "
        f"noise_std {c0.dataset.noise_std}); scores of random weights: the candidate counts and NMS work differ "
        "from a trained model's",
    ]
    print("notes:")
    for n in notes:
        print(f"  - {n}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "input": {"T": T, "C": C, "K": K, "threads": torch.get_num_threads(), "repeats": args.repeats},
                    "peak_GFLOP_per_s": peak / 1e9,
                    "peak_op": peak_op,
                    "systems": figures,
                    "notes": notes,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
