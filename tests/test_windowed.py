"""Windowed inference: the window plan, the edge rule, exactness for videos that fit, and lazy feature reading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cltdr.config import config_from_dict
from cltdr.data.features import FeatureError, open_features
from cltdr.inference.postprocess import PostprocessOptions
from cltdr.inference.windowed import detect_windows, plan_windows, uncut


@pytest.mark.parametrize("T, W, O", [(10, 10, 3), (11, 10, 3), (100, 32, 8), (1000, 96, 95), (257, 64, 0)])
def test_windows_cover_the_video_with_the_overlap(T, W, O):
    spans = plan_windows(T, W, O)
    assert spans[0][0] == 0 and spans[-1][1] == T
    if T <= W:
        assert spans == [(0, T)]
        return
    assert all(b - a == W for a, b in spans)
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert a0 < a1 and b0 - a1 >= O  # consecutive windows share at least the overlap
    # An action of at most O steps lies whole in some window, for every position.
    for s in range(0, T - O + 1):
        assert any(a <= s and s + O <= b for a, b in spans)


def test_window_plan_rejects_an_overlap_that_does_not_advance():
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(100, 10, 10)
    with pytest.raises(Exception, match="window_overlap"):
        config_from_dict(
            {
                "dataset": {"annotation_file": "a", "feat_dir": "b", "input_dim": 4},
                "test": {"window": 64, "window_overlap": 64},
            }
        )


def test_uncut_keeps_what_the_window_saw_whole():
    seg = torch.tensor([[10.5, 20.0], [10.0, 20.0], [30.0, 48.0], [30.0, 48.5], [12.0, 40.0]])
    # Window [10, 50) inside a longer video: both edges are cut edges.
    assert uncut(seg, 10, 50, 100).tolist() == [False, False, True, False, True]
    assert uncut(seg, 10, 50, 50).tolist() == [False, False, True, True, True]  # the video ends at 50
    assert uncut(seg - 10, 0, 40, 100).tolist() == [True, True, True, False, True]  # the video starts at 0


def _oracle(actions: list[tuple[float, float]]):
    """A 'model' that sees only its window: at the centre step of each action it scores 0.9 with the part of the
    action inside the window as its segment (a cut action is predicted cut), elsewhere 0."""

    def predict(start: int, stop: int):
        T = stop - start
        scores, segs = torch.zeros(T, 1), torch.zeros(T, 1, 2)
        for s, e in actions:
            a, b = max(s, start), min(e, stop - 1)
            if b - a < 1:
                continue
            t = int((a + b) / 2) - start
            scores[t, 0] = 0.9
            segs[t, 0] = torch.tensor([a - start, b - start])
        return [scores], [segs]

    return predict


def test_windows_merge_into_the_whole_actions_and_drop_cut_ones():
    actions = [(5.0, 25.0), (90.0, 110.0), (150.0, 175.0), (230.0, 236.0), (280.0, 299.0)]
    opts = PostprocessOptions(voting_iou=None)
    out = detect_windows(_oracle(actions), 300, opts, window=64, overlap=30)
    top = out.segments[: len(actions)]
    assert sorted(map(tuple, top.tolist())) == actions
    assert torch.allclose(out.scores[: len(actions)], torch.tensor(0.9))
    # A cut prediction (a part of an action) never survives as a detection of its own.
    for s, e in out.segments.tolist():
        assert (s, e) in actions


def test_a_video_that_fits_gives_exactly_the_whole_video_output(trained_run, tiny_data):
    from cltdr.data.build import class_names, load_split, make_dataset
    from cltdr.inference.runner import detect, postprocess_options
    from cltdr.runs import load_trained_model

    cfg, model, device = load_trained_model(trained_run)
    sample = make_dataset(cfg, load_split(cfg, cfg.dataset.test_subset), training=False)[0]
    args = (model, sample.feats, sample.grid, sample.duration, postprocess_options(cfg), class_names(cfg), device)
    T = sample.feats.shape[-1]
    assert detect(*args, window=(T, T // 2)) == detect(*args, window=None) == detect(*args, window=(4 * T, 8))


def test_windowed_detection_of_a_long_file_equals_the_in_memory_one(trained_run, tiny_data, tmp_path):
    """`cltdr detect`'s path (a .npy read window by window) and windows over the same features in memory agree,
    and several windows really run."""
    import yaml

    from cltdr.data.build import class_names, feature_store, load_split
    from cltdr.inference.runner import FeatureReader, detect, detect_file, postprocess_options
    from cltdr.inference.windowed import plan_windows
    from cltdr.runs import RunDir, load_trained_model

    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    data = yaml.safe_load(RunDir(trained_run).config.read_text())
    data["test"] = {**data.get("test", {}), "window": 64, "window_overlap": 16}
    run.config.write_text(yaml.safe_dump(data))
    run.last.write_bytes(RunDir(trained_run).last.read_bytes())
    cfg, model, device = load_trained_model(run.root)
    store = feature_store(cfg)
    split = load_split(cfg, cfg.dataset.test_subset)
    long = np.concatenate([store.read(v.video_id, v.subset) for v in split.videos])  # (T, C)
    path = tmp_path / "long.npy"
    np.save(path, long)
    assert len(plan_windows(long.shape[0], 64, 16)) > 3
    fps = split.videos[0].fps
    found = detect_file(cfg, model, device, path, fps=fps)
    grid = store.grid(fps, long.shape[0])
    in_memory = detect(
        model,
        FeatureReader.of_tensor(torch.from_numpy(long.T.copy())),
        grid,
        found.duration,
        postprocess_options(cfg),
        class_names(cfg),
        device,
        window=cfg.inference_window(),
    )
    assert found.steps == long.shape[0] and found.results == in_memory and found.results


# ------------------------------------------------------------------------------------------- lazy reading
def test_npy_features_are_read_by_windows_without_loading_the_file(tmp_path, monkeypatch):
    x = np.random.default_rng(0).standard_normal((500, 6)).astype(np.float32)
    path = tmp_path / "v.npy"
    np.save(path, x)

    def no_load(*args, **kwargs):
        raise AssertionError("the whole file was loaded")

    monkeypatch.setattr(np, "load", no_load)
    stored = open_features([(path, None)], video_id="v", input_dim=6)
    assert stored.num_steps == 500
    np.testing.assert_array_equal(stored.read(100, 164), x[100:164])
    np.testing.assert_array_equal(stored.read(), x)


def test_values_are_checked_window_by_window_with_the_video_step(tmp_path):
    x = np.zeros((300, 4), dtype=np.float32)
    x[250, 2] = np.nan
    np.save(tmp_path / "v.npy", x)
    stored = open_features([(tmp_path / "v.npy", None)], video_id="v", input_dim=4)
    stored.read(0, 200)  # the bad step lies further on: this window is fine
    with pytest.raises(FeatureError, match=r"steps 200-300.*first at step 250, channel 2"):
        stored.read(200, 300)
    with pytest.raises(FeatureError, match=r"expected \(T, 5\)"):  # channels: when opened, before any read
        open_features([(tmp_path / "v.npy", None)], video_id="v", input_dim=5)


def test_hdf5_features_are_sliced_on_read(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = np.arange(400 * 3, dtype=np.float32).reshape(400, 3)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["v"] = x
        f["w"] = x.T  # stored (C, T)
    for key, layout in (("v", "TC"), ("w", "CT")):
        stored = open_features([(tmp_path / "f.h5", key)], video_id=key, input_dim=3, layout=layout)
        assert stored.num_steps == 400
        np.testing.assert_array_equal(stored.read(10, 20), x[10:20])


def test_cltdr_test_runs_long_videos_in_windows_reading_them_lazily(trained_run, tmp_path, monkeypatch):
    import yaml

    from cltdr import cli
    from cltdr.inference import windowed
    from cltdr.runs import RunDir

    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    data = yaml.safe_load(RunDir(trained_run).config.read_text())
    data["test"] = {**data.get("test", {}), "window": 48, "window_overlap": 16}
    run.config.write_text(yaml.safe_dump(data))
    run.last.write_bytes(RunDir(trained_run).last.read_bytes())
    spans = []
    plan = windowed.plan_windows
    monkeypatch.setattr(windowed, "plan_windows", lambda *a: spans.append(plan(*a)) or spans[-1])
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a whole file was loaded")))
    assert cli.main(["test", str(run.root), "--quiet"]) == 0
    assert max(map(len, spans)) > 1  # some videos ran in several windows
    assert RunDir(run.root).metrics().is_file()
