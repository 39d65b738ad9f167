"""Feature files, the training crop, TALDataset and dynamic-padding collate."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cltdr.data.annotations import VideoRecord
from cltdr.data.dataset import Batch, TALDataset, VideoSample, collate, make_collate, random_crop
from cltdr.data.features import FeatureStore, feature_path, load_features
from cltdr.data.grid import FeatureGrid
from cltdr.errors import DataError

C = 8  # channels of the synthetic features


def record(video_id, segments, labels=None, duration=60.0, fps=30.0):
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    labels = np.zeros(len(segments), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    return VideoRecord(video_id, "Validation", duration, fps, segments, labels)


def save_feats(folder, video_id, num_steps, channels=C, prefix="", seed=0):
    feats = np.random.default_rng(seed).standard_normal((num_steps, channels)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(feature_path(folder, video_id, prefix), feats)
    return feats


STORE_KEYS = ("prefix", "ext", "input_dim", "feat_stride", "num_frames", "downsample_rate", "resize_to")


def make_dataset(tmp_path, videos, lengths, **kwargs):
    """Save features of ``lengths`` for ``videos``; keyword arguments go to the FeatureStore or the dataset."""
    for i, (rec, t) in enumerate(zip(videos, lengths)):
        save_feats(tmp_path / "feats", rec.video_id, t, seed=i)
    store = dict(sources=(tmp_path / "feats",), input_dim=C, feat_stride=4, num_frames=16)
    store.update({k: kwargs.pop(k) for k in STORE_KEYS if k in kwargs})
    args = dict(training=True, max_seq_len=64, seed=3)
    args.update(kwargs)
    return TALDataset(videos, store=FeatureStore(**store), **args)


# ---------------------------------------------------------------- features


def test_feature_path_and_load(tmp_path):
    assert feature_path("/f", "vid", "i3d_", ".npy").as_posix() == "/f/i3d_vid.npy"
    np.save(tmp_path / "v.npy", np.arange(12, dtype=np.float64).reshape(3, 4))
    feats = load_features(tmp_path / "v.npy", video_id="v", input_dim=4)
    assert feats.dtype == np.float32 and feats.shape == (3, 4) and feats[2, 3] == 11.0


def load_error(path, *fragments, **kwargs):
    kwargs = {"video_id": "vid7", "input_dim": 4, **kwargs}
    with pytest.raises(DataError) as info:
        load_features(path, **kwargs)
    msg = str(info.value)
    for fragment in (repr(kwargs["video_id"]), str(path), *fragments):
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def test_missing_feature_file_names_folder_and_hint(tmp_path):
    load_error(tmp_path / "nodir" / "vid7.npy", "does not exist", str(tmp_path / "nodir"))
    (tmp_path / "feats").mkdir()
    load_error(tmp_path / "feats" / "vid7.npy", "empty")
    np.save(tmp_path / "feats" / "i3d_vid7.npy", np.zeros((3, 4)))
    load_error(tmp_path / "feats" / "vid7.npy", str(tmp_path / "feats"), "'vid7.npy'", "i3d_vid7.npy", "prefix")
    np.save(tmp_path / "feats" / "other.npy", np.zeros((3, 4)))
    load_error(tmp_path / "feats" / "zzz.npy", "2 files", video_id="zzz")


def test_corrupt_feature_files(tmp_path):
    (tmp_path / "garbage.npy").write_bytes(b"this is not a numpy file at all")
    load_error(tmp_path / "garbage.npy", "could not be read")
    np.save(tmp_path / "full.npy", np.zeros((100, 4), dtype=np.float32))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:300])
    load_error(tmp_path / "trunc.npy", "could not be read")
    load_error(tmp_path / "feats.mp4", "'.mp4'", "supported")


def test_feature_shape_and_values(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4)))
    load_error(tmp_path / "a.npy", "2-D", "(2, 3, 4)")
    np.save(tmp_path / "b.npy", np.zeros((10, 1024), dtype=np.float32))
    load_error(tmp_path / "b.npy", "expected (T, 2048), got (T, 1024)", input_dim=2048)
    np.save(tmp_path / "c.npy", np.zeros((4, 10), dtype=np.float32))
    load_error(tmp_path / "c.npy", "transposed")
    bad = np.zeros((10, 4), dtype=np.float32)
    bad[3, 2], bad[7, 0], bad[8, 1] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "d.npy", bad)
    load_error(tmp_path / "d.npy", "3 NaN or inf", "step 3, channel 2")
    np.save(tmp_path / "e.npy", np.zeros((20, 4), dtype=np.float32))
    load_error(
        tmp_path / "e.npy",
        "20 steps",
        "the 6-level pyramid needs at least 32 steps",
        min_length=32,
        min_length_reason="the 6-level pyramid",
    )
    assert load_features(tmp_path / "e.npy", video_id="vid7", input_dim=4, min_length=20).shape == (20, 4)


# ---------------------------------------------------------------- crop rule


def reference_crop(num_steps, segments, labels, max_seq_len, crop_ratio, thresh, margin, rng, trials=200):
    """Slow, loop-per-segment version of the ActionFormer rule, drawing from rng in the same order."""
    if num_steps > max_seq_len:
        length = max_seq_len
    elif crop_ratio is None:
        return 0, num_steps, [list(s) for s in segments], list(labels)
    else:
        lo = max(round(crop_ratio[0] * num_steps), 1)
        hi = min(round(crop_ratio[1] * num_steps), num_steps)
        length = int(rng.integers(lo, hi + 1))
        if length == num_steps:
            return 0, num_steps, [list(s) for s in segments], list(labels)
    for _ in range(trials if len(segments) else 1):
        start = int(rng.integers(0, num_steps - length + 1))
        kept, kept_labels = [], []
        for (s, e), label in zip(segments, labels):
            a, b = max(s, start - margin), min(e, start + length + margin)
            if max(b - a, 0.0) >= thresh * (e - s):
                kept.append([a - start, b - start])
                kept_labels.append(label)
        if kept:
            break
    return start, start + length, kept, kept_labels


def random_video(rng):
    num_steps = int(rng.integers(5, 300))
    n = int(rng.integers(0, 6))
    starts = rng.uniform(-3, num_steps, n)
    segments = np.stack([starts, starts + rng.uniform(0.5, 40, n)], axis=1).reshape(-1, 2)
    return num_steps, segments, rng.integers(0, 20, n)


@pytest.mark.parametrize("case", range(150))
def test_crop_matches_reference(case):
    rng = np.random.default_rng(case)
    num_steps, segments, labels = random_video(rng)
    max_seq_len = int(rng.integers(4, 200))
    crop_ratio = None if case % 3 == 0 else (0.5, 1.0) if case % 3 == 1 else (0.9, 1.0)
    thresh, margin = float(rng.choice([0.3, 0.5, 1.0])), float(rng.choice([0.0, 2.0]))
    got = random_crop(
        num_steps,
        segments,
        labels,
        max_seq_len=max_seq_len,
        crop_ratio=crop_ratio,
        trunc_thresh=thresh,
        margin=margin,
        rng=np.random.default_rng([case, 1]),
    )
    want = reference_crop(
        num_steps, segments, labels, max_seq_len, crop_ratio, thresh, margin, np.random.default_rng([case, 1])
    )
    assert (got.start, got.end) == want[:2]
    np.testing.assert_allclose(got.segments.reshape(-1, 2), np.asarray(want[2], dtype=float).reshape(-1, 2))
    assert got.labels.tolist() == list(want[3])
    length = got.end - got.start
    assert 0 <= got.start and got.end <= num_steps
    if num_steps > max_seq_len:
        assert length == max_seq_len
    elif crop_ratio is not None:
        assert max(round(crop_ratio[0] * num_steps), 1) <= length <= num_steps
    else:
        assert length == num_steps
    if len(got.labels) == 0 and length < num_steps:  # nothing kept: no window of that length could keep anything
        for st in range(num_steps - length + 1):
            for s, e in segments:
                inside = min(e, st + length + margin) - max(s, st - margin)
                assert inside < thresh * (e - s)


class FixedStart:
    """Stands in for the rng: every window starts at ``start``."""

    def __init__(self, start):
        self.start = start

    def integers(self, lo, hi):
        assert lo <= self.start < hi
        return self.start


def test_trunc_thresh_rule_by_hand():
    segments = np.array([[20.0, 40.0], [10.0, 34.0], [75.0, 85.0], [40.0, 50.0], [90.0, 95.0]])
    labels = np.array([1, 2, 3, 4, 5])
    crop = random_crop(
        100, segments, labels, max_seq_len=50, crop_ratio=None, trunc_thresh=0.5, margin=0.0, rng=FixedStart(30)
    )  # window [30, 80]
    assert (crop.start, crop.end) == (30, 80)
    assert crop.labels.tolist() == [1, 3, 4]  # 10/20 kept, 4/24 dropped, 5/10 kept, inside kept, outside dropped
    np.testing.assert_allclose(crop.segments, [[0.0, 10.0], [45.0, 50.0], [10.0, 20.0]])
    crop = random_crop(
        100, segments, labels, max_seq_len=50, crop_ratio=None, trunc_thresh=0.51, margin=0.0, rng=FixedStart(30)
    )
    assert crop.labels.tolist() == [4]
    crop = random_crop(
        100, segments, labels, max_seq_len=50, crop_ratio=None, trunc_thresh=0.5, margin=2.0, rng=FixedStart(30)
    )  # window [28, 82]
    assert crop.labels.tolist() == [1, 3, 4]
    np.testing.assert_allclose(crop.segments, [[-2.0, 10.0], [45.0, 52.0], [10.0, 20.0]])


def test_crop_short_video():
    segments, labels = np.array([[10.0, 20.0]]), np.array([0])
    crop = random_crop(
        50,
        segments,
        labels,
        max_seq_len=64,
        crop_ratio=None,
        trunc_thresh=0.5,
        margin=0.0,
        rng=np.random.default_rng(0),
    )
    assert (crop.start, crop.end) == (0, 50) and crop.segments is segments
    lengths = set()
    for i in range(300):
        crop = random_crop(
            50,
            segments,
            labels,
            max_seq_len=64,
            crop_ratio=(0.9, 1.0),
            trunc_thresh=0.5,
            margin=0.0,
            rng=np.random.default_rng(i),
        )
        lengths.add(crop.end - crop.start)
    assert lengths == {45, 46, 47, 48, 49, 50}


def test_crop_retries_until_an_action_is_kept():
    segments, labels = np.array([[0.0, 4.0]]), np.array([0])  # only windows starting at 0..2 keep it
    for i in range(20):
        crop = random_crop(
            1000,
            segments,
            labels,
            max_seq_len=10,
            crop_ratio=None,
            trunc_thresh=0.5,
            margin=0.0,
            rng=np.random.default_rng(i),
            max_trials=100000,
        )
        assert crop.start <= 2 and crop.labels.tolist() == [0]
    empty = random_crop(
        1000,
        np.zeros((0, 2)),
        np.zeros(0, dtype=np.int64),
        max_seq_len=10,
        crop_ratio=None,
        trunc_thresh=0.5,
        margin=0.0,
        rng=np.random.default_rng(0),
    )
    assert empty.end - empty.start == 10 and empty.segments.shape == (0, 2)


# ---------------------------------------------------------------- dataset


def test_grid_conversion_test_mode(tmp_path):
    rec = record("v0", [[10.0, 20.0], [0.0, 1.0]], labels=[3, 1], duration=60.0, fps=30.0)
    ds = make_dataset(tmp_path, [rec], [450], training=False, max_seq_len=64, noise_std=1.0)
    feats = np.load(tmp_path / "feats" / "v0.npy")
    sample = ds[0]
    assert isinstance(sample, VideoSample) and sample.video_id == "v0" and sample.offset == 0
    assert sample.feats.shape == (C, 450) and sample.feats.dtype == torch.float32
    torch.testing.assert_close(sample.feats, torch.from_numpy(feats.T))  # no crop, no noise at test
    # seconds * fps = frames; minus half a clip (8); divided by the stride (4)
    torch.testing.assert_close(sample.segments, torch.tensor([[(300 - 8) / 4, (600 - 8) / 4], [-2.0, 5.5]]))
    assert sample.segments.dtype == torch.float32 and (sample.segments[0] == torch.tensor([73.0, 148.0])).all()
    assert sample.labels.tolist() == [3, 1] and sample.labels.dtype == torch.int64
    assert sample.grid == FeatureGrid(30.0, 4, 16) and sample.duration == 60.0


def test_training_sample_is_reference_crop(tmp_path):
    recs = [record(f"v{i}", [[2.0, 5.0], [20.0, 23.0], [40.0, 41.0]], fps=25.0) for i in range(3)]
    ds = make_dataset(tmp_path, recs, [400, 300, 40], crop_ratio=(0.9, 1.0), max_seq_len=128)
    ds.set_epoch(5)
    grid = FeatureGrid(25.0, 4, 16)
    for index, t in enumerate([400, 300, 40]):
        sample = ds[index]
        rng = np.random.default_rng([3, 5, index])
        start, end, segs, labels = reference_crop(
            t, grid.to_grid(recs[index].segments), recs[index].labels, 128, (0.9, 1.0), 0.5, 2.0, rng
        )
        feats = np.load(tmp_path / "feats" / f"v{index}.npy")
        assert sample.offset == start and sample.feats.shape == (C, end - start)
        torch.testing.assert_close(sample.feats, torch.from_numpy(feats[start:end].T))
        np.testing.assert_allclose(sample.segments.numpy().reshape(-1, 2), np.reshape(segs, (-1, 2)), rtol=1e-6)
        assert sample.labels.tolist() == list(labels)


def test_training_randomness_is_per_seed_epoch_index(tmp_path):
    recs = [record(f"v{i}", [[5.0, 9.0], [30.0, 35.0]]) for i in range(4)]
    ds = make_dataset(tmp_path, recs, [500] * 4, max_seq_len=64, noise_std=0.1)
    ds.set_epoch(2)
    first = [ds[i] for i in range(4)]
    np.random.seed(123)
    torch.manual_seed(123)
    resumed = make_dataset(tmp_path, recs, [500] * 4, max_seq_len=64, noise_std=0.1)  # a fresh process, resumed
    resumed.set_epoch(2)
    for i in reversed(range(4)):  # order of access does not matter
        again = resumed[i]
        assert again.offset == first[i].offset
        assert torch.equal(again.feats, first[i].feats) and torch.equal(again.segments, first[i].segments)
    offsets_by_epoch = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        offsets_by_epoch.append(tuple(ds[i].offset for i in range(4)))
    assert len(set(offsets_by_epoch)) == 4  # every epoch crops differently
    assert len(set(offsets_by_epoch[0])) > 1  # and videos of one epoch differ from each other
    other_seed = make_dataset(tmp_path, recs, [500] * 4, max_seq_len=64, noise_std=0.1, seed=4)
    other_seed.set_epoch(2)
    assert tuple(other_seed[i].offset for i in range(4)) != tuple(s.offset for s in first)


def test_training_noise(tmp_path):
    rec = record("v0", [[5.0, 9.0]])
    ds = make_dataset(tmp_path, [rec], [50], max_seq_len=64, noise_std=0.5)  # short: no crop
    clean = torch.from_numpy(np.load(tmp_path / "feats" / "v0.npy").T)
    noise = ds[0].feats - clean
    assert ds[0].offset == 0 and noise.dtype == torch.float32
    assert 0.4 < noise.std().item() < 0.6 and abs(noise.mean().item()) < 0.1
    assert torch.equal(ds[0].feats, ds[0].feats)


def test_dataset_errors_name_the_file(tmp_path):
    rec = record("v0", [[5.0, 9.0]])
    ds = make_dataset(tmp_path, [rec], [50], input_dim=16)
    with pytest.raises(DataError, match=r"'v0'.*v0\.npy.*expected \(T, 16\), got \(T, 8\)"):
        ds[0]
    ds = make_dataset(tmp_path, [rec], [50], min_length=64, min_length_reason="the 6-level pyramid")
    with pytest.raises(DataError, match="the 6-level pyramid needs at least 64 steps"):
        ds[0]
    ds = make_dataset(tmp_path, [rec], [50], prefix="i3d_")
    with pytest.raises(DataError, match=r"i3d_v0\.npy.*not found.*v0\.npy.*prefix"):
        ds[0]
    with pytest.raises(ValueError, match="crop_ratio"):
        make_dataset(tmp_path, [rec], [50], crop_ratio=(0.9, 1.2))


# ---------------------------------------------------------------- collate


def sample(video_id, length, n):
    feats = torch.randn(C, length)
    return VideoSample(video_id, feats, torch.rand(n, 2), torch.arange(n), 10.0, FeatureGrid(30.0, 4, 16), 0)


def test_collate_dynamic_padding():
    samples = [sample("a", 37, 2), sample("b", 50, 0)]
    batch = collate(samples, divisor=32)
    assert isinstance(batch, Batch)
    assert batch.feats.shape == (2, C, 64) and batch.mask.shape == (2, 64) and batch.mask.dtype == torch.bool
    assert batch.mask.sum(dim=1).tolist() == [37, 50]
    assert batch.mask[0, :37].all() and not batch.mask[0, 37:].any()
    torch.testing.assert_close(batch.feats[0, :, :37], samples[0].feats)
    torch.testing.assert_close(batch.feats[1, :, :50], samples[1].feats)
    assert (batch.feats[0, :, 37:] == 0).all() and (batch.feats[1, :, 50:] == 0).all()
    assert [s.shape for s in batch.segments] == [(2, 2), (0, 2)] and batch.labels[0].tolist() == [0, 1]
    assert [s.video_id for s in batch.samples] == ["a", "b"] and all(s.feats is None for s in batch.samples)
    assert samples[0].feats is not None  # the caller's samples are untouched
    assert collate([sample("c", 64, 1)], divisor=32).feats.shape[-1] == 64
    assert collate([sample("c", 65, 1)], divisor=32).feats.shape[-1] == 96
    assert collate([sample("c", 5, 1)], divisor=1).feats.shape[-1] == 5
    moved = batch.to("cpu")
    assert torch.equal(moved.feats, batch.feats) and moved.samples is batch.samples


def test_make_collate_is_picklable_and_works_in_a_dataloader(tmp_path):
    fn = pickle.loads(pickle.dumps(make_collate(32)))
    assert fn([sample("a", 40, 1)]).feats.shape == (1, C, 64)
    recs = [record(f"v{i}", [[1.0, 3.0]]) for i in range(3)]
    ds = make_dataset(tmp_path, recs, [37, 50, 20], training=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=make_collate(16))
    shapes = [b.feats.shape for b in loader]
    assert shapes == [(2, C, 64), (1, C, 32)]
    with pytest.raises(ValueError):
        collate([], divisor=4)
