"""Feature storage formats, streams, downsampling and resizing (checked by hand), the new dataset config keys, and
the multi-label data path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cltdr.config import config_from_dict
from cltdr.data.annotations import VideoRecord
from cltdr.data.build import load_split
from cltdr.data.dataset import TALDataset
from cltdr.data.features import FeatureError, FeatureStore, resize_linear, resized_grid
from cltdr.data.grid import FeatureGrid
from cltdr.errors import ConfigError, DataError

T, C = 12, 5


def feats(seed: int = 0, steps: int = T, channels: int = C) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((steps, channels)).astype(np.float32)


def store(sources, **kwargs) -> FeatureStore:
    args = dict(sources=tuple(sources), input_dim=C, feat_stride=4, num_frames=16)
    args.update(kwargs)
    return FeatureStore(**args)


# ------------------------------------------------------------------------------------- one reader per format
def write_npy(folder, x):
    np.save(folder / "i3d_vid.npy", x)
    return dict(ext=".npy")


def write_npz(folder, x):
    np.savez(folder / "i3d_vid.npz", feats=x, other=np.zeros(3))
    return dict(ext=".npz", keys=("feats",))


def write_pt(folder, x):
    torch.save(torch.from_numpy(x), folder / "i3d_vid_spatial_feature.pt")
    return dict(ext="_spatial_feature.pt")


def write_pt_dict(folder, x):
    torch.save({"rgb": torch.from_numpy(x[:, :2]), "flow": torch.from_numpy(x[:, 2:])}, folder / "i3d_vid.pth")
    return dict(ext=".pth", keys=("rgb", "flow"))


def write_pkl_slowfast(folder, x):  # TCANet's HACS layout: (1, C_s, T) tensors under two keys
    data = {
        "slow_feature": torch.from_numpy(x[:, :3].T[None].copy()),
        "fast_feature": torch.from_numpy(x[:, 3:].T[None].copy()),
    }
    with open(folder / "i3d_vid.pkl", "wb") as f:
        pickle.dump(data, f)
    return dict(ext=".pkl", keys=("slow_feature", "fast_feature"), layout="CT")


def write_hdf5(folder, x):
    h5py = pytest.importorskip("h5py")  # the optional extra "hdf5"
    with h5py.File(folder / "all.h5", "w") as f:
        f.create_dataset("i3d_vid", data=x)
        f.create_dataset("i3d_other", data=np.zeros((3, C)))
    return dict(sources=(folder / "all.h5",))


def write_hdf5_group(folder, x):
    h5py = pytest.importorskip("h5py")
    with h5py.File(folder / "all.hdf5", "w") as f:
        group = f.create_group("i3d_vid")
        group.create_dataset("rgb", data=x[:, :1])
        group.create_dataset("flow", data=x[:, 1:])
    return dict(sources=(folder / "all.hdf5",), keys=("rgb", "flow"))


WRITERS = [write_npy, write_npz, write_pt, write_pt_dict, write_pkl_slowfast, write_hdf5, write_hdf5_group]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__[6:])
def test_every_format_reads_the_same_features(tmp_path, writer):
    x = feats()
    options = {"sources": (tmp_path,), **writer(tmp_path, x)}
    s = store(options.pop("sources"), prefix="i3d_", **options)
    got = s.read("vid")
    assert got.dtype == np.float32 and got.flags.writeable and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x)


def test_two_stream_folders_are_concatenated_in_order(tmp_path):
    rgb, flow = feats(1, channels=2), feats(2, channels=3)
    for name, x in (("rgb", rgb), ("flow", flow)):
        (tmp_path / name / "training").mkdir(parents=True)
        np.save(tmp_path / name / "training" / "v.npy", x)
    s = store([tmp_path / "rgb" / "{subset}", tmp_path / "flow" / "{subset}"])
    np.testing.assert_array_equal(s.read("v", "training"), np.concatenate([rgb, flow], axis=1))
    np.save(tmp_path / "flow" / "training" / "v.npy", flow[:-1])
    with pytest.raises(DataError, match=r"different lengths.*rgb/training/v\.npy: 12 steps.*flow/training/v\.npy: 11"):
        s.read("v", "training")
    np.save(tmp_path / "flow" / "training" / "v.npy", feats(2, channels=4))
    with pytest.raises(
        DataError,
        match=r"'v'.*rgb/training/v\.npy \+ .*flow/training/v\.npy \(2 \+ 4 channels\): "
        r"expected \(T, 5\), got \(T, 6\)",
    ):
        s.read("v", "training")


@pytest.mark.parametrize(
    "write, options, kind, fragments",
    [
        (
            lambda p: np.savez(p / "v.npz", a=feats(), b=feats()),
            dict(ext=".npz"),
            "wrong shape",
            ["v.npz", "holds several arrays ['a', 'b']", "dataset.feat_keys"],
        ),
        (
            lambda p: np.savez(p / "v.npz", a=feats()),
            dict(ext=".npz", keys=("feats",)),
            "wrong shape",
            ["has no key 'feats' (dataset.feat_keys)", "['a']"],
        ),
        (lambda p: np.save(p / "v.npy", feats()), dict(keys=("feats",)), "wrong shape", ["unset dataset.feat_keys"]),
        (lambda p: np.save(p / "v.npy", feats().T), {}, "wrong channels", ["got (T, 12)", "set dataset.feat_layout"]),
        (lambda p: np.save(p / "v.npy", feats()[None, None]), {}, "wrong channels", []),  # (1, 1, T, C) squeezes
        (lambda p: np.save(p / "v.npy", np.zeros((2, T, C))), {}, "wrong shape", ["2-D array (T, C)", "(2, 12, 5)"]),
        (lambda p: (p / "v.pkl").write_bytes(b"garbage"), dict(ext=".pkl"), "unreadable file", ["could not be read"]),
        (lambda p: torch.save("text", p / "v.pt"), dict(ext=".pt"), "wrong shape", ["expected an array or tensor"]),
        (lambda p: None, {}, "missing file", ["v.npy not found"]),
    ],
)
def test_format_errors_name_the_file_and_the_key(tmp_path, write, options, kind, fragments):
    write(tmp_path)
    s = store([tmp_path], **options)
    if kind == "wrong channels" and not fragments:  # the squeezed one is fine
        assert s.read("v").shape == (T, C)
        return
    with pytest.raises(FeatureError) as info:
        s.read("v")
    assert info.value.kind == kind and "video 'v'" in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_hdf5_missing_entry_and_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("a", data=feats())
    with pytest.raises(
        FeatureError,
        match=r"f\.h5 has no entry 'v_b' \(it holds 1 entries, e.g. \['a'\]; check "
        r"feat_prefix\)",
    ):
        store([tmp_path / "f.h5"], prefix="v_").read("b")
    with pytest.raises(FeatureError, match=r"HDF5 feature file .*nope\.h5 not found"):
        store([tmp_path / "nope.h5"]).read("a")


# ----------------------------------------------------------------------------- downsample and resize by hand
def test_downsample_keeps_every_kth_step_and_widens_the_stride(tmp_path):
    x = feats(steps=10)
    np.save(tmp_path / "v.npy", x)
    s = store([tmp_path], downsample_rate=3)
    out, grid = s.load("v", "", fps=30.0)
    np.testing.assert_array_equal(out, x[[0, 3, 6, 9]])
    assert s.prepared_length(10) == 4 and grid == FeatureGrid(30.0, 12, 16)
    # feature 1 now covers frames [12, 28): its centre, frame 20, is at 2/3 s
    assert grid.to_seconds(1.0) == pytest.approx(20 / 30)


def test_resize_linear_by_hand():
    x = np.array([[0.0], [10.0], [20.0], [30.0]], dtype=np.float32)  # (T=4, C=1) -> L=6
    # step i samples position (i + 0.5) * 4 / 6 - 0.5 = -1/6, 1/2, 7/6, 11/6, 5/2, 19/6, clamped to [0, 3]
    np.testing.assert_allclose(resize_linear(x, 6)[:, 0], [0, 5, 70 / 6, 110 / 6, 25, 30], rtol=1e-6)
    np.testing.assert_allclose(resize_linear(x, 2)[:, 0], [5, 25])  # positions 0.5 and 2.5
    assert resize_linear(x, 4) is x


def test_resized_video_grid_by_hand(tmp_path):
    """TSP on ActivityNet: T = 4 features (stride 16, 16 frames, 15 fps) resized to L = 6 steps."""
    np.save(tmp_path / "v_vid.npy", feats(steps=4))
    s = store([tmp_path], prefix="v_", feat_stride=16, num_frames=16, resize_to=6)
    out, grid = s.load("vid", "", fps=15.0)
    assert out.shape == (6, C)
    # the 4 features span frames [0, 3 * 16 + 16) = [0, 64); each of the 6 new steps covers 64 / 6 frames
    assert grid.feat_stride == grid.num_frames == pytest.approx(64 / 6)
    # seconds -> grid: 1 s = 15 frames = 15 / (64/6) = 1.40625 steps from the start, minus half a step
    np.testing.assert_allclose(grid.to_grid(np.array([1.0, 3.0])), [0.90625, 3.71875])
    # step 0's centre is frame 32/6 = 5.333, i.e. 0.3556 s; the last step (5) ends at frame 64 = 4.2667 s
    assert grid.to_seconds(0.0) == pytest.approx(32 / 6 / 15)
    assert grid.to_seconds(5.5) == pytest.approx(64 / 15)
    assert grid == resized_grid(15.0, 16, 16, 4, 6)
    # downsampling first: 10 stored steps, every 3rd -> 4 steps of stride 48, spanning 3 * 48 + 16 = 160 frames
    ds = store([tmp_path], feat_stride=16, num_frames=16, downsample_rate=3, resize_to=8)
    assert ds.grid(15.0, 10).feat_stride == pytest.approx(160 / 8)


def test_dataset_uses_each_resized_videos_own_grid(tmp_path):
    np.save(tmp_path / "a.npy", feats(1, steps=4))
    np.save(tmp_path / "b.npy", feats(2, steps=8))
    recs = [VideoRecord(v, "validation", 5.0, 15.0, np.array([[1.0, 3.0]]), np.array([0])) for v in "ab"]
    ds = TALDataset(
        recs, store=store([tmp_path], feat_stride=16, num_frames=16, resize_to=6), training=False, max_seq_len=6
    )
    a, b = ds[0], ds[1]
    assert a.feats.shape == b.feats.shape == (C, 6)
    torch.testing.assert_close(a.segments, torch.tensor([[0.90625, 3.71875]]))
    assert b.grid.feat_stride == pytest.approx((7 * 16 + 16) / 6)  # 128 frames over 6 steps
    torch.testing.assert_close(b.segments, torch.tensor([[15 / (128 / 6) - 0.5, 45 / (128 / 6) - 0.5]]))


# ------------------------------------------------------------------------------------------ config keys
def dataset_config(**dataset):
    return {"dataset": {"annotation_file": "a.json", "feat_dir": "f", **dataset}}


@pytest.mark.parametrize(
    "dataset, fragment",
    [
        ({"feat_dir": []}, "key 'dataset.feat_dir': Value error, expected a path or a non-empty list of paths"),
        ({"feat_layout": "NCT"}, "key 'dataset.feat_layout'"),
        ({"feat_keys": []}, "key 'dataset.feat_keys'"),
        ({"downsample_rate": 0}, "key 'dataset.downsample_rate'"),
        ({"resize_to": 4000}, "dataset.resize_to=4000 is longer than dataset.max_seq_len=2304"),
        ({"resize_to": 16}, "dataset.resize_to=16 is shorter than the coarsest stride 32"),
        ({"class_agnostic": True, "class_names": ["a", "b"]}, "dataset.class_names has 2 names"),
        ({"feat_fps": -1}, "key 'dataset.feat_fps'"),
        ({"fusion": {"topk": 2}}, "missing key 'dataset.fusion.score_file'"),
        ({"fusion": {"score_file": "s.json", "top_k": 2}}, "unknown key 'dataset.fusion.top_k'"),
    ],
)
def test_new_dataset_keys_are_validated_by_name(dataset, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(dataset_config(**dataset), "x.yaml")
    assert "invalid config x.yaml" in str(info.value) and fragment in str(info.value)


def test_feat_dir_may_be_a_list_and_defaults_keep_the_old_behaviour():
    cfg = config_from_dict(dataset_config(feat_dir=["rgb", "flow"], input_dim=2048))
    assert [str(p) for p in cfg.dataset.feat_sources] == ["rgb", "flow"]
    d = config_from_dict(dataset_config()).dataset
    assert (d.downsample_rate, d.resize_to, d.feat_keys, d.feat_layout, d.class_agnostic, d.fusion) == (
        1,
        None,
        None,
        "TC",
        False,
        None,
    )


def test_feat_fps_and_class_agnostic_in_load_split(tiny_data):
    base = {
        "annotation_file": str(tiny_data.annotation_path),
        "feat_dir": str(tiny_data.feat_dir),
        "train_subset": tiny_data.train_subset,
        "input_dim": tiny_data.input_dim,
    }
    plain = load_split(config_from_dict({"dataset": base}), tiny_data.train_subset)
    cfg = config_from_dict({"dataset": {**base, "feat_fps": 12.5, "class_agnostic": True}})
    split = load_split(cfg, tiny_data.train_subset)
    assert split.class_names == ["action"] and {v.fps for v in split.videos} == {12.5}
    assert all((v.labels == 0).all() and len(v.labels) == len(p.labels) for v, p in zip(split.videos, plain.videos))
    assert any(len(set(p.labels.tolist())) > 1 for p in plain.videos)


# ------------------------------------------------------------------------------------ multi-label data path
def test_overlapping_and_identical_segments_with_different_labels_are_kept(tmp_path):
    np.save(tmp_path / "v.npy", feats(steps=200))
    segments = np.array([[2.0, 6.0], [2.0, 6.0], [4.0, 9.0], [2.0, 6.0]])  # same segment as 3 classes, 1 overlap
    rec = VideoRecord("v", "validation", 30.0, 30.0, segments, np.array([3, 7, 3, 1]))
    for training in (False, True):
        ds = TALDataset([rec], store=store([tmp_path]), training=training, max_seq_len=256, crop_ratio=None)
        sample = ds[0]
        assert sample.labels.tolist() == [3, 7, 3, 1]
        grid = FeatureGrid(30.0, 4, 16)
        torch.testing.assert_close(sample.segments, torch.from_numpy(grid.to_grid(segments)).float())
