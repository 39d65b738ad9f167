"""The embedded synthetic benchmark: a dataset written in exactly the on-disk format of a real one.

``generate(out_dir, preset, seed)`` writes ``out_dir/annotations.json`` (ActivityNet / ActionFormer layout,
subsets ``training`` / ``testing``), one ``out_dir/features/<video_id>.npy`` of shape (T, C) float32 per
video, and ``out_dir/synth_meta.json`` (the generator's own truth: each class's phases and each action's phase
boundaries in steps, for tests and diagnosis; no loader reads it). Every file is written atomically and the
annotation file last, so an interrupted run never leaves an annotation that points at a missing or torn
feature file. Output is byte-identical for a given (preset, seed).

Letters: T feature steps of a video, C feature channels (``input_dim``), K classes, P motion primitives,
R rank of the background drift.

How a video is made (in feature steps; seconds only when the annotation is written):

* Background: per-step Gaussian noise, a per-video scene offset, and a slowly drifting rank-R component
  (low-pass filtered noise with correlation length ``drift_steps``).
* Motion primitives: P patterns in feature space (a mean direction plus a periodic texture). A class is a
  sequence of three phases (start, middle, end), each phase one primitive, no primitive twice in a class.
  Primitives are shared evenly, each by several classes, so one step tells which primitive plays, not which
  class: a class is the *order* of its primitives over time.
* Shared openings: ``num_shared_openings`` pairs of classes (ids 0/1, 2/3, ...) open with the same primitive
  and differ in both later phases: the paper's Long Jump / High Jump case. Partners often share a video.
* Actions: log-normal lengths, placed without overlap until a per-video coverage target is met, drawn from
  1-2 classes per video; some "dense" videos have many short actions. Boundaries ramp in and out (sigmoids
  over ``ramp_steps``), phases cross-fade, every instance has its own amplitude, perturbed primitive means
  and texture phase; annotated boundaries are jittered, then rounded to 0.1 s like THUMOS14.
* Distractors: unlabelled primitive sequences (1-3 phases) whose order is no class and contains no
  class's opening or closing pair of primitives, so they are not truncated actions either.
"""

from __future__ import annotations

import functools
import math
import os
import zlib
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from cltdr.data.grid import FeatureGrid
from cltdr.errors import ConfigError
from cltdr.utils.io import atomic_write, atomic_write_json, read_json

TRAIN_SUBSET = "training"
TEST_SUBSET = "testing"
NUM_PHASES = 3
PHASE_SHARES = (0.3, 0.4, 0.3)  # mean share of an action's length taken by its start, middle and end phase


@dataclass(frozen=True)
class SynthPreset:
    """Every knob of the generator. Lengths are in feature steps unless the name says seconds (``_s``)."""

    # --- size
    num_train_videos: int  # videos in the "training" subset
    num_test_videos: int  # videos in the "testing" subset
    video_steps_median: float  # median video length (log-normal) ...
    video_steps_sigma: float  # ... its log-space standard deviation (0.82 gives THUMOS14's mean/median of 1.4)
    video_steps_min: int  # video length is clipped to [min, max]
    video_steps_max: int
    input_dim: int  # C, feature channels
    # --- classes
    num_classes: int  # K
    num_primitives: int  # P, shared motion primitives; 3K/P is how many class phases share each primitive
    num_shared_openings: int  # pairs of classes with the same opening primitive (Long Jump / High Jump)
    # --- actions
    action_len_median_s: float  # median action length in seconds (log-normal)
    action_len_sigma: float  # its log-space standard deviation (0.86 gives THUMOS14's 10th/90th pct of 1 s/9 s)
    action_len_min_steps: int = 3  # shortest action (at least one step per phase)
    action_len_max_frac: float = 0.6  # longest action as a share of its video
    coverage_mean: float = 0.3  # share of a video covered by actions (per-video target, Gaussian) ...
    coverage_std: float = 0.1  # ... its spread across videos
    dense_video_prob: float = 0.0  # probability that a video has many short actions ...
    dense_len_scale: float = 0.35  # ... whose length distribution is scaled by this
    second_class_prob: float = 0.3  # probability that a video has a second class (else one class) ...
    partner_prob: float = 0.5  # ... which is the shared-opening partner of its first, when it has one
    min_gap_steps: int = 2  # background steps kept between two actions or distractors
    distractor_coverage: float = 0.05  # share of a video covered by unlabelled distractor sequences
    # --- appearance
    signal_norm: float = 3.5  # norm of a primitive's mean; a step's separability ~ signal_norm / noise_std
    texture_norm: float = 0.6  # norm of a primitive's periodic texture (period 6-20 steps)
    instance_jitter: float = 0.3  # per-instance perturbation of a primitive mean, relative to signal_norm
    amplitude_jitter: float = 0.25  # per-instance amplitude drawn from 1 +- this
    noise_std: float = 1.0  # per-step, per-channel Gaussian noise
    scene_norm: float = 0.7  # norm of a per-video constant offset
    drift_norm: float = 1.0  # norm of the slowly drifting background component ...
    drift_steps: float = 48.0  # ... its correlation length in steps ...
    drift_rank: int = 4  # ... and its rank R
    ramp_steps: float = 3.0  # width of the soft ramp in/out at an action's ends
    phase_blend_steps: float = 3.0  # width of the cross-fade between two phases
    phase_concentration: float = 20.0  # Dirichlet concentration of phase shares (larger: closer to PHASE_SHARES)
    boundary_jitter_s: float = 0.15  # std of the annotation noise on each boundary, seconds ...
    boundary_jitter_frac: float = 0.03  # ... plus this share of the action's length
    # --- grid (THUMOS14 I3D)
    fps: float = 30.0
    feat_stride: int = 4
    num_frames: int = 16

    def __post_init__(self) -> None:
        triples = self.num_primitives * (self.num_primitives - 1) * (self.num_primitives - 2)
        if self.num_primitives < NUM_PHASES or triples < self.num_classes:
            raise ConfigError(
                f"SynthPreset: {self.num_primitives} primitives cannot make {self.num_classes} distinct classes"
            )
        if 2 * self.num_shared_openings > self.num_classes:
            raise ConfigError(
                f"SynthPreset: {self.num_shared_openings} shared-opening pairs need at least "
                f"{2 * self.num_shared_openings} classes, got num_classes={self.num_classes}"
            )
        lo, hi = self.video_steps_min, self.video_steps_max
        if not 2 * self.action_len_min_steps <= lo <= hi:
            raise ConfigError(
                f"SynthPreset: need 2 * action_len_min_steps ({2 * self.action_len_min_steps}) <= "
                f"video_steps_min ({lo}) <= video_steps_max ({hi})"
            )


PRESETS: dict[str, SynthPreset] = {
    # Unit tests: a few dozen short videos, generated in well under a second.
    "tiny": SynthPreset(
        num_train_videos=16,
        num_test_videos=8,
        video_steps_median=110,
        video_steps_sigma=0.3,
        video_steps_min=64,
        video_steps_max=160,
        input_dim=32,
        num_classes=4,
        num_primitives=4,
        num_shared_openings=1,
        action_len_median_s=2.5,
        action_len_sigma=0.6,
        action_len_max_frac=0.5,
    ),
    # `make demo`: learnable by a small temporal model in ~2 CPU minutes; 8 classes, 2 shared-opening pairs.
    "demo": SynthPreset(
        num_train_videos=100,
        num_test_videos=40,
        video_steps_median=300,
        video_steps_sigma=0.45,
        video_steps_min=128,
        video_steps_max=768,
        input_dim=64,
        num_classes=8,
        num_primitives=6,
        num_shared_openings=2,
        action_len_median_s=4.0,
        action_len_sigma=0.7,
        dense_video_prob=0.05,
        dense_len_scale=0.4,
        second_class_prob=0.35,
    ),
    # THUMOS14 statistics: 200/212 videos, mean ~1,570 steps (median 150 s, long tail capped at 12,000 steps),
    # ~15 actions per video (median ~8, some with hundreds), action median 3 s (10th/90th pct ~1 s/9 s),
    # ~30% coverage, ~1.15 classes per video, 20 classes. input_dim 256 rather than I3D's 2048: the dataset
    # already takes ~0.7 GB at 256 channels, and 2048 would add nothing to the difficulty.
    "thumos-like": SynthPreset(
        num_train_videos=200,
        num_test_videos=212,
        video_steps_median=1150,
        video_steps_sigma=0.82,
        video_steps_min=150,
        video_steps_max=12000,
        input_dim=256,
        num_classes=20,
        num_primitives=12,
        num_shared_openings=4,
        action_len_median_s=3.3,
        action_len_sigma=0.86,
        action_len_max_frac=0.5,
        coverage_std=0.12,
        dense_video_prob=0.08,
        dense_len_scale=0.5,
        second_class_prob=0.18,
        signal_norm=2.5,
    ),
}


@dataclass(frozen=True)
class SynthInfo:
    """Where :func:`generate` wrote a dataset and how to read it."""

    root: Path
    annotation_path: Path
    feat_dir: Path
    class_names: list[str]
    input_dim: int
    fps: float
    feat_stride: int
    num_frames: int
    train_subset: str
    test_subset: str
    meta_path: Path  # synth_meta.json: class phases and per-action phase boundaries (generator truth)


@dataclass(frozen=True)
class _Grammar:
    """Classes as primitive sequences, and the primitives' appearance."""

    phases: tuple[tuple[int, ...], ...]  # K classes x NUM_PHASES primitive ids
    pairs: tuple[tuple[int, int], ...]  # classes sharing their opening primitive
    distractors: tuple[tuple[int, ...], ...]  # every allowed distractor sequence
    means: np.ndarray  # (P, C) primitive mean directions
    textures: np.ndarray  # (P, C) primitive texture directions
    periods: np.ndarray  # (P,) texture periods in steps


@dataclass(frozen=True)
class _Item:
    """One rendered action (``label_id`` set) or distractor (``label_id`` None)."""

    primitives: tuple[int, ...]
    bounds: tuple[int, ...]  # phase boundaries in steps: start, inner cuts..., end (exclusive)
    label_id: int | None


@dataclass(frozen=True)
class _VideoPlan:
    video_id: str
    subset: str
    num_steps: int  # T
    duration: float  # seconds, consistent with num_steps on the grid
    items: tuple[_Item, ...]


def _class_name(k: int) -> str:
    return f"action{k:02d}"


def _seed_seq(seed: int, name: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(name.encode()), *key])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _make_grammar(p: SynthPreset, rng: np.random.Generator) -> _Grammar:
    """Assign primitive sequences to classes, balancing how often each primitive is used."""
    K, P = p.num_classes, p.num_primitives
    pairs = tuple((2 * i, 2 * i + 1) for i in range(p.num_shared_openings))
    for _ in range(1000):
        usage = np.zeros(P)
        phases: list[tuple[int, ...]] = []
        for k in range(K):
            partner = phases[k - 1] if k % 2 == 1 and k < 2 * len(pairs) else None
            seq: list[int] = []
            for j in range(NUM_PHASES):
                if j == 0 and partner is not None:
                    seq.append(partner[0])
                    continue
                ok = [q for q in range(P) if q not in seq and (partner is None or q != partner[j])]
                least = [q for q in ok if usage[q] == min(usage[ok])]
                seq.append(int(rng.choice(least)))
            usage[seq] += 1
            phases.append(tuple(seq))
        firsts, lasts = [s[:2] for s in phases], [s[1:] for s in phases]
        if len(set(phases)) == K and len(set(firsts)) == K and len(set(lasts)) == K:
            break
    else:  # pragma: no cover - only for presets with far too few primitives
        raise ConfigError(f"SynthPreset: could not build {K} classes from {P} primitives; add primitives")
    bigrams = set(firsts) | set(lasts)
    distractors = tuple(
        seq
        for n in (1, 2, 3)
        for seq in product(range(P), repeat=n)
        if len(set(seq)) == n and not any(seq[i : i + 2] in bigrams for i in range(n - 1))
    )
    C = p.input_dim
    means = rng.standard_normal((P, C))
    means *= p.signal_norm / np.linalg.norm(means, axis=1, keepdims=True)
    textures = rng.standard_normal((P, C))
    textures *= p.texture_norm / np.linalg.norm(textures, axis=1, keepdims=True)
    periods = rng.uniform(6.0, 20.0, size=P)
    return _Grammar(tuple(phases), pairs, distractors, means, textures, periods)


def _free_starts(busy: np.ndarray, length: int, gap: int) -> np.ndarray:
    """Starts s where [s - gap, s + length + gap) (clipped to the video) holds no busy step."""
    T = busy.size
    c = np.concatenate([[0], np.cumsum(busy)])
    s = np.arange(max(T - length + 1, 0))
    lo, hi = np.maximum(s - gap, 0), np.minimum(s + length + gap, T)
    return s[c[hi] == c[lo]]


def _phase_bounds(start: int, length: int, n: int, p: SynthPreset, rng: np.random.Generator) -> tuple[int, ...]:
    """Split ``length`` steps from ``start`` into ``n`` phases of Dirichlet-random shares, each >= 1 step."""
    shares = np.asarray(PHASE_SHARES if n == NUM_PHASES else [1.0 / n] * n)
    frac = rng.dirichlet(p.phase_concentration * shares)
    cuts = [int(round(c)) for c in np.cumsum(frac)[:-1] * length]
    for i in range(n - 1):  # every phase keeps at least one step
        lo = cuts[i - 1] + 1 if i else 1
        cuts[i] = min(max(cuts[i], lo), length - (n - 1 - i))
    return (start, *(start + c for c in cuts), start + length)


def _plan_video(
    p: SynthPreset, g: _Grammar, video_id: str, subset: str, primary: int, rng: np.random.Generator
) -> _VideoPlan:
    """Length, duration, classes and the placed actions and distractors of one video (nothing rendered)."""
    T = round(p.video_steps_median * math.exp(p.video_steps_sigma * rng.standard_normal()))
    T = int(np.clip(T, p.video_steps_min, p.video_steps_max))
    # T = floor((duration * fps - num_frames) / stride) + 1 holds for any fractional part u in (0, 1)
    duration = round(((T - 1 + rng.uniform(0.1, 0.9)) * p.feat_stride + p.num_frames) / p.fps, 2)
    classes, weights = [primary], [1.0]
    if rng.random() < p.second_class_prob:
        partner = next((b if a == primary else a for a, b in g.pairs if primary in (a, b)), None)
        if partner is not None and rng.random() < p.partner_prob:
            second = partner
        else:
            second = int(rng.choice([k for k in range(p.num_classes) if k != primary]))
        classes, weights = [primary, second], [0.65, 0.35]

    dense = rng.random() < p.dense_video_prob
    median = p.action_len_median_s * p.fps / p.feat_stride * (p.dense_len_scale if dense else 1.0)
    max_len = max(p.action_len_min_steps, int(p.action_len_max_frac * T))

    def sample_len(scale: float = 1.0) -> int:
        L = round(median * scale * math.exp(p.action_len_sigma * rng.standard_normal()))
        return int(np.clip(L, p.action_len_min_steps, max_len))

    busy = np.zeros(T, dtype=bool)
    items: list[_Item] = []

    def place(length: int, seq: tuple[int, ...], label: int | None) -> bool:
        starts = _free_starts(busy, length, p.min_gap_steps)
        if starts.size == 0:
            return False
        s = int(rng.choice(starts))
        busy[s : s + length] = True
        items.append(_Item(seq, _phase_bounds(s, length, len(seq), p, rng), label))
        return True

    target = float(np.clip(rng.normal(p.coverage_mean, p.coverage_std), 0.05, 0.75)) * T
    failures = 0
    while failures < 10:
        k, length = classes[int(rng.choice(len(classes), p=weights))], sample_len()
        if items and busy.sum() + length / 2 > target:  # stop where coverage lands closest to its target
            break
        failures += not place(length, g.phases[k], k)
    if not items:  # every video has at least one action
        place(p.action_len_min_steps, g.phases[primary], primary)
    target = busy.sum() + p.distractor_coverage * rng.uniform(0.5, 1.5) * T
    failures = 0
    while failures < 10:
        seq = g.distractors[int(rng.integers(len(g.distractors)))]
        length = sample_len(len(seq) / NUM_PHASES)
        if busy.sum() + length / 2 > target:
            break
        failures += not place(length, seq, None)
    items.sort(key=lambda it: it.bounds[0])
    return _VideoPlan(video_id, subset, T, duration, tuple(items))


def _plan_dataset(p: SynthPreset, name: str, seed: int) -> tuple[_Grammar, list[_VideoPlan]]:
    """The grammar and every video's plan: cheap (no features), and all that fixes the annotations."""
    grammar = _make_grammar(p, np.random.default_rng(_seed_seq(seed, name, 0)))
    plans = []
    for s_idx, (subset, n) in enumerate(((TRAIN_SUBSET, p.num_train_videos), (TEST_SUBSET, p.num_test_videos))):
        order = np.random.default_rng(_seed_seq(seed, name, 1, s_idx)).permutation(p.num_classes)
        for i in range(n):
            rng = np.random.default_rng(_seed_seq(seed, name, 2, s_idx, i))
            primary = int(order[i % p.num_classes])  # round-robin: every class in every subset
            plans.append(_plan_video(p, grammar, f"video_{subset}_{i:05d}", subset, primary, rng))
    return grammar, plans


def _lowpass_noise(rng: np.random.Generator, T: int, R: int, corr_steps: float) -> np.ndarray:
    """(T, R) Gaussian-filtered noise with unit standard deviation per column."""
    pad = int(3 * corr_steps)
    white = rng.standard_normal((T + 2 * pad, R))
    freq = np.fft.rfftfreq(T + 2 * pad)
    smooth = np.fft.irfft(
        np.fft.rfft(white, axis=0) * np.exp(-0.5 * (freq * corr_steps) ** 2)[:, None], n=T + 2 * pad, axis=0
    )[pad : pad + T]
    return smooth / (smooth.std(axis=0, keepdims=True) + 1e-8)


def _render_item(x: np.ndarray, it: _Item, p: SynthPreset, g: _Grammar, rng: np.random.Generator) -> None:
    """Add one action or distractor to the (T, C) features in place."""
    T, C = x.shape
    s, e = it.bounds[0], it.bounds[-1]
    tau, tau_p = max(p.ramp_steps, 1e-3) / 4, max(p.phase_blend_steps, 1e-3) / 4
    margin = int(math.ceil(6 * max(tau, tau_p))) + 1
    lo, hi = max(0, s - margin), min(T, e + margin)
    t = np.arange(lo, hi, dtype=np.float64)  # (t,) the steps this item touches
    env = _sigmoid((t - (s - 0.5)) / tau) * _sigmoid(((e - 0.5) - t) / tau)
    # past[j]: how far the item is past the start of phase j (1 for the first phase, 0 after the last)
    past = [np.ones_like(t)] + [_sigmoid((t - (b - 0.5)) / tau_p) for b in it.bounds[1:-1]] + [np.zeros_like(t)]
    out = np.zeros((t.size, C))  # (t, C)
    for j, q in enumerate(it.primitives):
        w = past[j] - past[j + 1]  # cross-faded weight of phase j
        mean = g.means[q] + rng.standard_normal(C) * (p.instance_jitter * p.signal_norm / math.sqrt(C))
        wave = np.sin(2 * np.pi * (t - it.bounds[j]) / g.periods[q] + rng.uniform(0, 2 * np.pi))
        out += w[:, None] * (mean[None, :] + wave[:, None] * g.textures[q][None, :])
    amp = rng.uniform(1 - p.amplitude_jitter, 1 + p.amplitude_jitter)
    x[lo:hi] += (amp * env[:, None] * out).astype(np.float32)


def _render_video(plan: _VideoPlan, p: SynthPreset, g: _Grammar, rng: np.random.Generator) -> np.ndarray:
    """The (T, C) float32 features of a planned video: noise, scene offset, drift, then every item."""
    T, C = plan.num_steps, p.input_dim
    x = rng.standard_normal((T, C), dtype=np.float32) * np.float32(p.noise_std)  # (T, C)
    scene = rng.standard_normal(C)
    x += (scene * (p.scene_norm / np.linalg.norm(scene))).astype(np.float32)
    z = _lowpass_noise(rng, T, p.drift_rank, p.drift_steps)  # (T, R)
    dirs = rng.standard_normal((p.drift_rank, C))
    dirs *= p.drift_norm / math.sqrt(p.drift_rank) / np.linalg.norm(dirs, axis=1, keepdims=True)
    drift = np.zeros((T, C))
    for r in range(p.drift_rank):  # elementwise, not BLAS: bytes must not depend on the thread count
        drift += z[:, r, None] * dirs[r][None, :]
    x += drift.astype(np.float32)
    for it in plan.items:
        _render_item(x, it, p, g, rng)
    return x


def _annotation_entry(plan: _VideoPlan, p: SynthPreset, rng: np.random.Generator) -> dict[str, Any]:
    """The ActivityNet-style entry of one video: jittered boundaries in seconds, rounded to 0.1 s."""
    grid = FeatureGrid(p.fps, p.feat_stride, p.num_frames)
    top = math.floor(plan.duration * 10) / 10
    anns = []
    for it in plan.items:
        if it.label_id is None:
            continue
        # an action on steps [s, e) spans grid [s - 0.5, e - 0.5]
        start, end = float(grid.to_seconds(it.bounds[0] - 0.5)), float(grid.to_seconds(it.bounds[-1] - 0.5))
        std = p.boundary_jitter_s + p.boundary_jitter_frac * (end - start)
        limit = 0.25 * (end - start)  # jitter never eats more than half the action
        start += float(np.clip(rng.normal(0.0, std), -2 * std, 2 * std).clip(-limit, limit))
        end += float(np.clip(rng.normal(0.0, std), -2 * std, 2 * std).clip(-limit, limit))
        start, end = min(max(round(start, 1), 0.0), top), min(max(round(end, 1), 0.0), top)
        if end <= start:
            start, end = (start, round(start + 0.1, 1)) if start + 0.1 <= top else (round(end - 0.1, 1), end)
        anns.append({"label": _class_name(it.label_id), "label_id": it.label_id, "segment": [start, end]})
    return {"subset": plan.subset, "duration": plan.duration, "fps": p.fps, "annotations": anns}


def _resolve(preset: str | SynthPreset) -> tuple[str, SynthPreset]:
    if isinstance(preset, SynthPreset):
        return "custom", preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return preset, PRESETS[preset]


def generate(out_dir: str | os.PathLike, preset: str | SynthPreset = "demo", seed: int = 0) -> SynthInfo:
    """Write the synthetic dataset ``preset`` (a name in :data:`PRESETS`, or a custom :class:`SynthPreset`)
    under ``out_dir``; deterministic for a given (preset, seed). Feature files of other videos already in
    ``out_dir/features`` are left alone (the annotation file lists the videos that belong to the dataset)."""
    name, p = _resolve(preset)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"synthetic data seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    root = Path(out_dir)
    feat_dir = root / "features"
    feat_dir.mkdir(parents=True, exist_ok=True)
    grammar, plans = _plan_dataset(p, name, seed)
    database, meta_videos = {}, {}
    for n, plan in enumerate(plans):
        rng = np.random.default_rng(_seed_seq(seed, name, 3, n))
        x = _render_video(plan, p, grammar, rng)
        atomic_write(feat_dir / f"{plan.video_id}.npy", functools.partial(np.save, arr=x), mode="wb")
        database[plan.video_id] = _annotation_entry(plan, p, np.random.default_rng(_seed_seq(seed, name, 4, n)))
        meta_videos[plan.video_id] = [
            {"label_id": it.label_id, "primitives": list(it.primitives), "steps": list(it.bounds)} for it in plan.items
        ]
    class_names = [_class_name(k) for k in range(p.num_classes)]
    meta = {
        "preset": name,
        "seed": seed,
        "params": asdict(p),
        "class_phases": {class_names[k]: list(ph) for k, ph in enumerate(grammar.phases)},
        "shared_openings": [[class_names[a], class_names[b]] for a, b in grammar.pairs],
        "videos": meta_videos,  # per video: every action (label_id) and distractor (label_id null), in steps
    }
    atomic_write_json(root / "synth_meta.json", meta, indent=None)
    atomic_write_json(root / "annotations.json", {"version": f"cltdr-synth-{name}", "database": database})
    return SynthInfo(
        root=root,
        annotation_path=root / "annotations.json",
        feat_dir=feat_dir,
        class_names=class_names,
        input_dim=p.input_dim,
        fps=p.fps,
        feat_stride=p.feat_stride,
        num_frames=p.num_frames,
        train_subset=TRAIN_SUBSET,
        test_subset=TEST_SUBSET,
        meta_path=root / "synth_meta.json",
    )


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else 0.0


def describe_database(database: dict[str, Any], feat_stride: float = 4, num_frames: float = 16) -> dict[str, Any]:
    """Statistics of an ActivityNet-style ``database`` mapping (any dataset, not only synthetic ones)."""
    subsets: dict[str, int] = {}
    actions: dict[str, int] = {}
    class_counts: dict[str, int] = {}
    steps: list[float] = []
    secs: list[float] = []
    lens: list[float] = []
    per_video: list[int] = []
    coverage: list[float] = []
    classes: list[int] = []
    for entry in database.values():
        sub, dur, fps = entry["subset"], float(entry["duration"]), float(entry.get("fps") or 30.0)
        anns = entry["annotations"]
        subsets[sub] = subsets.get(sub, 0) + 1
        actions[sub] = actions.get(sub, 0) + len(anns)
        steps.append(math.floor((dur * fps - num_frames) / feat_stride) + 1)
        secs.append(dur)
        per_video.append(len(anns))
        segs = sorted((float(a["segment"][0]), float(a["segment"][1])) for a in anns)
        covered, reach = 0.0, 0.0
        for a, b in segs:  # union length of the segments
            a = max(a, reach)
            covered += max(0.0, b - a)
            reach = max(reach, b)
        coverage.append(covered / dur)
        lens.extend(b - a for a, b in segs)
        classes.append(len({a["label"] for a in anns}))
        for a in anns:
            class_counts[a["label"]] = class_counts.get(a["label"], 0) + 1

    def stat(v):
        return {"mean": round(float(np.mean(v)), 3), "median": _pct(v, 50), "max": round(float(max(v)), 3)}

    return {
        "videos": subsets,
        "actions": actions,
        "num_classes": len(class_counts),
        "class_counts": dict(sorted(class_counts.items())),
        "video_steps": stat(steps),
        "video_seconds": stat(secs),
        "actions_per_video": stat(per_video),
        "action_seconds": {f"p{q}": _pct(lens, q) for q in (10, 50, 90)} | {"max": _pct(lens, 100)},
        "coverage": round(float(np.mean(coverage)), 3),
        "classes_per_video": round(float(np.mean(classes)), 3),
    }


def describe(info: SynthInfo) -> dict[str, Any]:
    """Statistics of a generated dataset, for the CLI's summary: videos and actions per subset, class counts,
    video lengths in steps and seconds, action-length percentiles in seconds, coverage, classes per video."""
    data = read_json(info.annotation_path, "annotation")
    out = {"version": data.get("version"), "input_dim": info.input_dim}
    return out | describe_database(data["database"], info.feat_stride, info.num_frames)
