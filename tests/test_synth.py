"""The synthetic benchmark: its on-disk format, determinism, statistics, and the difficulty it promises.

Letters: T steps, C channels, K classes, N samples (steps) fed to a classifier, D classifier input width.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from cltdr.data import synth
from cltdr.errors import ConfigError

CONTEXT_WIDTHS = (4, 12, 36)  # window widths (steps) before and after a step, for the context classifier


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> synth.SynthInfo:
    return synth.generate(tmp_path_factory.mktemp("tiny"), "tiny", seed=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> synth.SynthInfo:
    return synth.generate(tmp_path_factory.mktemp("demo"), "demo", seed=0)


def _read(info: synth.SynthInfo) -> tuple[dict, dict]:
    database = json.loads(info.annotation_path.read_text())["database"]
    meta = json.loads(info.meta_path.read_text())
    return database, meta


# ---------------------------------------------------------------- format


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_files_have_the_dataset_format(name, request):
    info = request.getfixturevalue(name)
    p = synth.PRESETS[name]
    data = json.loads(info.annotation_path.read_text())
    assert data["version"] == f"cltdr-synth-{name}"
    database = data["database"]
    subsets = [e["subset"] for e in database.values()]
    assert subsets.count(info.train_subset) == p.num_train_videos
    assert subsets.count(info.test_subset) == p.num_test_videos
    assert info.class_names == [f"action{k:02d}" for k in range(p.num_classes)]
    seen = set()
    for video_id, entry in database.items():
        assert set(entry) == {"subset", "duration", "fps", "annotations"}
        assert entry["fps"] == 30.0 and entry["duration"] > 0
        x = np.load(info.feat_dir / f"{video_id}.npy")
        T = math.floor((entry["duration"] * info.fps - info.num_frames) / info.feat_stride) + 1
        assert x.shape == (T, info.input_dim) and x.dtype == np.float32, video_id
        assert p.video_steps_min <= T <= p.video_steps_max
        assert np.isfinite(x).all()
        assert entry["annotations"], f"{video_id} has no action"
        for ann in entry["annotations"]:
            assert set(ann) == {"label", "label_id", "segment"}
            start, end = ann["segment"]
            assert 0.0 <= start < end <= entry["duration"], (video_id, ann)
            assert round(start, 1) == start and round(end, 1) == end  # 0.1 s, like THUMOS14
            assert info.class_names[ann["label_id"]] == ann["label"]
            seen.add((entry["subset"], ann["label_id"]))
    # every class is annotated in both subsets
    assert seen == {(s, k) for s in (info.train_subset, info.test_subset) for k in range(p.num_classes)}
    # atomic writes leave no temporary files behind
    assert not [f for f in info.root.rglob(".*")]
    assert len(list(info.feat_dir.glob("*.npy"))) == len(database)


def test_annotations_match_the_rendered_actions(tiny):
    """Each annotated segment lies within a jitter of the action drawn in the features (generator truth)."""
    database, meta = _read(tiny)
    p = synth.PRESETS["tiny"]
    for video_id, entry in database.items():
        actions = [it for it in meta["videos"][video_id] if it["label_id"] is not None]
        assert [a["label_id"] for a in actions] == [a["label_id"] for a in entry["annotations"]]
        for it, ann in zip(actions, entry["annotations"]):
            s, e = it["steps"][0], it["steps"][-1]
            start = ((s - 0.5) * p.feat_stride + 0.5 * p.num_frames) / p.fps
            end = ((e - 0.5) * p.feat_stride + 0.5 * p.num_frames) / p.fps
            tol = 2 * (p.boundary_jitter_s + p.boundary_jitter_frac * (end - start)) + 0.1
            assert abs(ann["segment"][0] - start) <= tol and abs(ann["segment"][1] - end) <= tol


def test_describe_counts_agree_with_the_file(tiny):
    database, _ = _read(tiny)
    d = synth.describe(tiny)
    assert d["videos"] == {"training": 16, "testing": 8}
    assert sum(d["actions"].values()) == sum(len(e["annotations"]) for e in database.values())
    assert sum(d["class_counts"].values()) == sum(d["actions"].values())
    assert d["num_classes"] == 4 and d["input_dim"] == 32
    assert 0 < d["coverage"] < 1 and d["classes_per_video"] >= 1
    json.dumps(d)  # plain JSON types, for the CLI


# ---------------------------------------------------------------- determinism and errors


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    start = time.perf_counter()
    synth.generate(tmp_path / "a", "tiny", seed=3)
    elapsed = time.perf_counter() - start
    synth.generate(tmp_path / "b", "tiny", seed=3)
    synth.generate(tmp_path / "c", "tiny", seed=4)
    a, b, c = (_tree_bytes(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert a["annotations.json"] != c["annotations.json"]
    assert a["features/video_training_00000.npy"] != c["features/video_training_00000.npy"]
    assert elapsed < 5.0, f"tiny preset took {elapsed:.2f} s to generate (meant to take well under a second)"


def test_unknown_preset_names_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="tiny.*demo.*thumos-like"):
        synth.generate(tmp_path, "huge")
    with pytest.raises(ConfigError, match="seed"):
        synth.generate(tmp_path, "tiny", seed=-1)
    with pytest.raises(ConfigError, match="primitives"):
        dataclasses.replace(synth.PRESETS["tiny"], num_classes=30, num_primitives=3)


def test_custom_preset(tmp_path):
    p = dataclasses.replace(synth.PRESETS["tiny"], num_train_videos=2, num_test_videos=1, input_dim=8)
    info = synth.generate(tmp_path, p, seed=0)
    assert json.loads(info.annotation_path.read_text())["version"] == "cltdr-synth-custom"
    assert np.load(info.feat_dir / "video_testing_00000.npy").shape[1] == 8


# ---------------------------------------------------------------- statistics


def test_demo_statistics_in_their_intended_ranges(demo):
    d = synth.describe(demo)
    assert d["videos"] == {"training": 100, "testing": 40}
    assert d["num_classes"] == 8
    assert 250 <= d["video_steps"]["median"] <= 350 and d["video_steps"]["max"] <= 768
    lengths = d["action_seconds"]
    assert lengths["p10"] < 2.0 and 2.5 <= lengths["p50"] <= 5.5 and lengths["p90"] > 6.0
    assert 0.22 <= d["coverage"] <= 0.38
    assert 1.05 <= d["classes_per_video"] <= 1.6
    assert 2.0 <= d["actions_per_video"]["mean"] <= 6.0 and d["actions_per_video"]["max"] >= 8
    _, meta = _read(demo)
    assert len(meta["shared_openings"]) >= 1


def test_thumos_like_plan_has_thumos14_statistics():
    """The annotations of the full-scale preset (planned only: rendering its ~0.6 GB is left to the CLI)."""
    p = synth.PRESETS["thumos-like"]
    _, plans = synth._plan_dataset(p, "thumos-like", 0)
    rng = np.random.default_rng(0)
    d = synth.describe_database({v.video_id: synth._annotation_entry(v, p, rng) for v in plans})
    assert d["videos"] == {"training": 200, "testing": 212} and d["num_classes"] == 20
    assert 1300 <= d["video_steps"]["mean"] <= 1850 and d["video_steps"]["max"] <= 12000
    assert 2.5 <= d["action_seconds"]["p50"] <= 3.5
    assert d["action_seconds"]["p10"] <= 1.3 and 7.0 <= d["action_seconds"]["p90"] <= 11.0
    assert 10 <= d["actions_per_video"]["mean"] <= 20 and d["actions_per_video"]["max"] >= 60
    assert 0.25 <= d["coverage"] <= 0.35
    assert 1.05 <= d["classes_per_video"] <= 1.3


# ---------------------------------------------------------------- difficulty


def _lda_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Linear discriminant analysis (class means, shrunk pooled covariance): (N, D) features, (N,) labels."""
    classes = np.unique(y_train)  # (K,)
    means = np.stack([x_train[y_train == k].mean(0) for k in classes])  # (K, D)
    resid = x_train - means[np.searchsorted(classes, y_train)]  # (N, D)
    cov = resid.T @ resid / len(resid)  # (D, D)
    cov = 0.9 * cov + 0.1 * np.trace(cov) / len(cov) * np.eye(len(cov))
    proj = np.linalg.solve(cov, means.T)  # (D, K)
    prior = np.log(np.array([(y_train == k).mean() for k in classes]))
    scores = x_test @ proj - 0.5 * (means * proj.T).sum(1) + prior  # (N, K)
    return float((classes[scores.argmax(1)] == y_test).mean())


def _with_context(x: np.ndarray, widths: tuple[int, ...]) -> np.ndarray:
    """(T, C) -> (T, C * (1 + 2 * len(widths))): the step, then the means of [t - w, t) and [t + 1, t + 1 + w)."""
    T, C = x.shape
    csum = np.concatenate([np.zeros((1, C)), np.cumsum(x, axis=0, dtype=np.float64)])  # (T + 1, C)
    t = np.arange(T)
    parts = [x.astype(np.float64)]
    for w in widths:
        for lo, hi in ((t - w, t), (t + 1, t + 1 + w)):
            lo, hi = np.clip(lo, 0, T), np.clip(hi, 0, T)
            parts.append((csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)[:, None])
    return np.concatenate(parts, axis=1)


def _action_steps(info, subset: str, widths: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Features of every step inside an annotated action of ``subset`` and its class: (N, D), (N,)."""
    database, meta = _read(info)
    feats, labels = [], []
    for video_id, items in meta["videos"].items():
        if database[video_id]["subset"] != subset:
            continue
        x = _with_context(np.load(info.feat_dir / f"{video_id}.npy"), widths)
        for it in items:
            if it["label_id"] is not None:
                s, e = it["steps"][0], it["steps"][-1]
                feats.append(x[s:e])
                labels.append(np.full(e - s, it["label_id"]))
    return np.concatenate(feats), np.concatenate(labels)


def _single_step_bound(info) -> float:
    """Best per-step accuracy of a classifier that knows each step's primitive exactly (train statistics)."""
    database, meta = _read(info)
    counts = np.zeros((meta["params"]["num_primitives"], len(info.class_names)))  # (P, K) steps
    for video_id, items in meta["videos"].items():
        for it in items:
            if it["label_id"] is not None and database[video_id]["subset"] == info.train_subset:
                for j, q in enumerate(it["primitives"]):
                    counts[q, it["label_id"]] += it["steps"][j + 1] - it["steps"][j]
    return float(counts.max(1).sum() / counts.sum())


def test_single_step_classifier_fails_where_context_succeeds(demo):
    """A linear classifier on one step stays near the structural bound (a step shows its primitive, shared by
    several classes); the same classifier fed window means around the step does far better."""
    single = _lda_accuracy(*_action_steps(demo, "training", ()), *_action_steps(demo, "testing", ()))
    context = _lda_accuracy(
        *_action_steps(demo, "training", CONTEXT_WIDTHS), *_action_steps(demo, "testing", CONTEXT_WIDTHS)
    )
    bound = _single_step_bound(demo)
    print(f"single-step {single:.3f} (bound {bound:.3f}), context {context:.3f}, chance {1 / 8:.3f}")
    assert bound < 0.45
    assert single < min(0.4, bound + 0.05)
    assert context > single + 0.25


def _phase_cores(info, subset: str, label: int, phase: int, margin: int) -> list[np.ndarray]:
    """Per ``label`` action of ``subset``: (n, C) features of its ``phase``, ``margin`` steps from the edges."""
    database, meta = _read(info)
    out = []
    for video_id, items in meta["videos"].items():
        if database[video_id]["subset"] != subset:
            continue
        x = None
        for it in items:
            if it["label_id"] != label:
                continue
            lo, hi = it["steps"][phase] + margin, it["steps"][phase + 1] - margin
            if hi > lo:
                x = np.load(info.feat_dir / f"{video_id}.npy") if x is None else x
                out.append(x[lo:hi].astype(np.float64))
    return out


def _permutation_p(a: np.ndarray, b: np.ndarray, rounds: int = 400) -> float:
    """p-value of the squared distance between the means of (Na, C) and (Nb, C) under label permutation."""
    x = np.concatenate([a, b])

    def stat(idx):
        return float(((x[idx[: len(a)]].mean(0) - x[idx[len(a) :]].mean(0)) ** 2).sum())

    observed = stat(np.arange(len(x)))
    rng = np.random.default_rng(0)
    null = [stat(rng.permutation(len(x))) for _ in range(rounds)]
    return (1 + sum(s >= observed for s in null)) / (1 + rounds)


def test_paired_classes_share_their_opening_phase_only(demo):
    """For each shared-opening pair: (1) nearest-centroid between the two classes, fitted on training steps of
    one phase and tested on testing steps, is at chance on the opening phase and near perfect on the middle
    and end phases; (2) a permutation test on per-action mean features finds no difference in the opening
    phase and a clear one in the others."""
    _, meta = _read(demo)
    p = synth.PRESETS["demo"]
    margin = int(math.ceil(max(p.ramp_steps, p.phase_blend_steps))) + 1
    assert meta["shared_openings"]
    for name_a, name_b in meta["shared_openings"]:
        a, b = demo.class_names.index(name_a), demo.class_names.index(name_b)
        pa, pb = meta["class_phases"][name_a], meta["class_phases"][name_b]
        assert pa[0] == pb[0] and pa[1] != pb[1] and pa[2] != pb[2]
        accs, pvals = [], []
        for phase in range(3):
            train = [_phase_cores(demo, "training", k, phase, margin) for k in (a, b)]
            test = [_phase_cores(demo, "testing", k, phase, margin) for k in (a, b)]
            centroids = np.stack([np.concatenate(t).mean(0) for t in train])  # (2, C)
            hits = [
                ((np.concatenate(t)[:, None] - centroids[None]) ** 2).sum(-1).argmin(1) == i for i, t in enumerate(test)
            ]
            accs.append(float(np.concatenate(hits).mean()))
            means = [np.stack([m.mean(0) for m in tr + te]) for tr, te in zip(train, test)]  # (N, C) each
            pvals.append(_permutation_p(*means))
        print(name_a, name_b, "per-phase accuracy", np.round(accs, 3), "permutation p", np.round(pvals, 3))
        assert 0.35 <= accs[0] <= 0.65 and pvals[0] > 0.05
        assert min(accs[1:]) > 0.9 and max(pvals[1:]) < 0.01
