"""`cltdr check` and the pre-training checks on the tiny synthetic dataset, damaged in every way they report; and
the shipped configs of the paper's experiments."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from cltdr import cli
from cltdr.config import load_config
from cltdr.data.build import load_split, make_dataset
from cltdr.data.check import check_dataset, preflight
from cltdr.errors import DataError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def edit_database(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data["database"])
    path.write_text(json.dumps(data))


def test_check_on_a_good_dataset(tiny_data, write_config, tmp_path, capsys):
    config = write_config(tiny_data)
    assert cli.main(["check", str(config), "--json", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out
    for fragment in (
        "[train] subset 'training': 16 videos",
        "[test] subset 'testing': 8 videos",
        "actions per class: action0",
        "video length (steps): min ",
        "action length (steps): ",
        "dataset.max_seq_len: ",
        "model.num_levels: ",
        "training actions per level now: [0, 4) ",
        "result: OK, the dataset can be trained on (0 warnings)",
    ):
        assert fragment in out, fragment
    report = json.loads((tmp_path / "report.json").read_text())
    train = report["splits"][0]
    assert report["ok"] and train["videos"] == 16 and train["problems"] == []
    assert sum(train["class_counts"].values()) == train["actions"] > 0
    assert train["video_steps"]["min"] >= 8 and report["suggestions"]["max_seq_len"]["suggested"] % 8 == 0


def damage(info) -> dict[str, str]:
    """Damage the copy of the tiny dataset in every way `cltdr check` reports; returns video -> what."""
    feat = lambda v: info.feat_dir / f"{v}.npy"  # noqa: E731
    v = [f"video_training_{i:05d}" for i in range(8)]
    feat(v[0]).unlink()
    np.save(feat(v[1]), np.load(feat(v[1]))[:, :31])
    x = np.load(feat(v[2]))
    x[3, 4] = np.nan
    np.save(feat(v[2]), x)
    np.save(feat(v[3]), np.load(feat(v[3]))[:5])
    x = np.load(feat(v[4]))
    np.save(feat(v[4]), x[: len(x) // 2])  # half the video's duration

    def annotations(db):
        db[v[5]]["annotations"].append(dict(db[v[5]]["annotations"][0]))  # a duplicate
        db[v[6]]["annotations"].append(
            {"label": "action01", "label_id": 1, "segment": db[v[6]]["annotations"][0]["segment"]}
        )  # multi-label: fine
        db[v[7]]["annotations"].append(
            {"label": "action01", "label_id": 1, "segment": [1.0, db[v[7]]["duration"] + 5]}
        )  # outside the video
        db["video_testing_00000"]["annotations"] = []

    edit_database(info.annotation_path, annotations)
    return {
        v[0]: "missing file",
        v[1]: "wrong channels",
        v[2]: "non-finite values",
        v[3]: "too short",
        v[4]: "length vs duration",
        v[5]: "duplicate annotations",
        "video_testing_00000": "video without actions",
    }


def test_check_reports_every_problem(data_copy, write_config, tmp_path, capsys):
    expected = damage(data_copy)
    config = write_config(data_copy, dataset={"segment_policy": "clip"})
    report = check_dataset(load_config(config))
    train, test = report.splits
    found = {(p.video_id, p.kind) for s in report.splits for p in s.problems}
    for video, kind in expected.items():
        assert (video, kind) in found, (video, kind)
    assert ("video_training_00003", "length vs duration") in found  # 5 steps: also far too short for its duration
    assert dict(train.counts("error")) == {
        "missing file": 1,
        "wrong channels": 1,
        "non-finite values": 1,
        "too short": 1,
    }
    assert train.counts("warning")["segments outside their video"] == 1
    assert train.multi_label_segments == 1 and test.counts("warning") == Counter({"video without actions": 1})
    messages = {p.kind: p.message for p in train.problems}
    assert "video 'video_training_00001'" in messages["wrong channels"] and "got (T, 31)" in messages["wrong channels"]
    assert (
        "expected about" in messages["length vs duration"]
        and "check fps, feat_stride" in messages["length vs duration"]
    )
    assert len(train.video_steps) == 13  # the unreadable videos have no length
    # the command prints the report, then exits 2 saying why
    assert cli.main(["check", str(config), "--max-problems", "3", "--json", str(tmp_path / "r.json")]) == 2
    out, err = capsys.readouterr()
    assert "errors: missing file 1, non-finite values 1, too short 1, wrong channels 1" in out
    assert "... and " in out and "result: 4 errors: the dataset cannot be used as configured" in out
    assert err.startswith(
        f"cltdr check: error: {config}: the dataset cannot be trained on as configured: 4 errors "
        "(missing file, non-finite values, too short, wrong channels); the first: video "
    )
    assert not json.loads((tmp_path / "r.json").read_text())["ok"]


def test_check_reports_an_annotation_file_that_does_not_load(data_copy, write_config, capsys):
    damage(data_copy)
    config = write_config(data_copy)  # segment_policy: error
    report = check_dataset(load_config(config))
    assert [p.kind for p in report.splits[0].problems] == ["annotations"]
    assert "outside [0, duration]" in report.splits[0].problems[0].message
    assert report.splits[1].num_videos == 8  # the test subset is still checked
    assert cli.main(["check", str(config)]) == 2
    assert "annotations" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:annotation file")
def test_preflight_lists_unusable_videos_and_warns_about_the_rest(data_copy, write_config):
    damage(data_copy)
    cfg = load_config(write_config(data_copy, dataset={"segment_policy": "clip"}))
    dataset = make_dataset(cfg, load_split(cfg, "training"), training=True)
    with pytest.raises(DataError) as info:
        preflight(dataset, max_listed=2)
    msg = str(info.value)
    assert msg.startswith("4 of 16 videos of subset 'training' cannot be used:\n  video 'video_training_00000'")
    assert "... and 2 more" in msg and "`cltdr check CONFIG`" in msg
    dataset.videos = [r for r in dataset.videos if r.video_id in ("video_training_00004", "video_training_00005")]
    with pytest.warns(
        UserWarning,
        match=r"subset 'training': 1 x actions after the features, 1 x duplicate "
        r"annotations, 1 x length vs duration; e.g. video 'video_training_00004'",
    ):
        preflight(dataset)


# ----------------------------------------------------------------------------------------------- shipped configs
# config -> (input_dim, levels, bins, lr, batch, total epochs, warm-up, weight decay, tIoU thresholds): SPEC
# section 4 and the paper's supplementary C, whose epoch counts include the warm-up (as in the released configs).
THUMOS, MULTI, EPIC = [0.3, 0.4, 0.5, 0.6, 0.7], [round(0.1 * i, 1) for i in range(1, 10)], [0.1, 0.2, 0.3, 0.4, 0.5]
ANET = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
RECIPES = {
    "thumos14_i3d": (2048, 6, 16, 1e-4, 2, 40, 20, 0.035, THUMOS),
    "thumos14_videomaev2": (1408, 6, 16, 1e-4, 2, 62, 30, 0.055, THUMOS),
    "thumos14_internvideo2": (3200, 6, 16, 1e-4, 2, 57, 32, 0.05, THUMOS),
    "multithumos_i3d_rgb": (1024, 6, 16, 1.5e-4, 2, 60, 25, 0.03, MULTI),
    "multithumos_i3d": (2048, 6, 16, 1.5e-4, 2, 60, 25, 0.03, MULTI),
    "multithumos_videomaev2": (1408, 6, 16, 1.5e-4, 2, 60, 25, 0.03, MULTI),
    "epic_verb_slowfast": (2304, 6, 16, 1e-4, 2, 28, 10, 0.05, EPIC),
    "epic_noun_slowfast": (2304, 6, 16, 1e-4, 2, 25, 16, 0.04, EPIC),
    "anet_tsp": (512, 7, 12, 1e-3, 16, 15, 10, 0.045, ANET),
    "anet_i3d": (2048, 7, 12, 1e-3, 16, 15, 10, 0.045, ANET),
    "hacs_i3d": (2048, 7, 14, 1e-3, 16, 17, 12, 0.03, ANET),
    "hacs_slowfast": (2304, 7, 14, 1e-3, 16, 15, 10, 0.03, ANET),
}


def test_every_shipped_config_loads():
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert set(RECIPES) <= set(names)
    for name in names:
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.dataset.annotation_file.suffix == ".json", name


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_recipe_matches_the_paper(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    dim, levels, bins, lr, batch, total, warmup, wd, tious = RECIPES[name]
    d, m, t = cfg.dataset, cfg.model, cfg.train
    assert (d.input_dim, m.num_levels, m.num_bins, t.lr, t.batch_size) == (dim, levels, bins, lr, batch)
    assert (t.warmup_epochs + t.epochs, t.warmup_epochs, t.weight_decay) == (total, warmup, wd)
    assert cfg.test.tiou_thresholds == pytest.approx(tious)
    text = (CONFIGS / f"{name}.yaml").read_text()
    assert "Paper" in text and "cltdr train configs/" + name + ".yaml" in text  # the numbers and the commands
    if name.startswith("anet"):
        assert d.class_agnostic and d.fusion is not None and d.resize_to == d.max_seq_len in (160, 192)
    if name.startswith("multithumos"):
        assert m.multi_label and len(yaml.safe_load(text)["dataset"]) > 0
