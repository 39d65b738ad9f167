"""bench/compare_training.py: what the competitors' train.py is given (no training here); both comparison scripts
skip a checkout they cannot use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cltdr.config import load_config
from cltdr.data.build import class_names, load_split, make_dataset

BENCH = Path(__file__).resolve().parents[1] / "bench" / "compare_training.py"


@pytest.fixture(scope="module")
def ct(bench_script):
    return bench_script("compare_training")


def their_grid_segments(database: dict, num_frames: float, feat_stride: float) -> dict:
    """What their thumos14 dataset makes of the JSON: per video, (label_id, segment on the feature grid)."""
    return {
        video_id: sorted(
            (a["label_id"], *((np.asarray(a["segment"]) * v["fps"] - 0.5 * num_frames) / feat_stride))
            for a in v["annotations"]
        )
        for video_id, v in database.items()
    }


def test_their_annotations_hold_cltdr_s_videos_labels_and_grid(ct, tiny_data, write_config):
    # a label order that is not the file's, so that label_id must follow cltdr's classes
    cfg = load_config(write_config(tiny_data))
    names = list(reversed(class_names(cfg)))
    cfg = load_config(write_config(tiny_data, dataset={"class_names": names}))
    annotations, num_classes = ct.their_annotations(cfg)
    database = annotations["database"]
    assert num_classes == len(names)

    theirs = their_grid_segments(database, cfg.dataset.num_frames, cfg.dataset.feat_stride)
    for subset in (cfg.dataset.train_subset, cfg.dataset.test_subset):
        videos = load_split(cfg, subset).videos
        assert ct.train_videos(annotations, subset) == len(videos)
        dataset = make_dataset(cfg, load_split(cfg, subset), training=False)
        for i, rec in enumerate(videos):
            entry = database[rec.video_id]
            assert entry["subset"] == subset.lower()
            assert all(names[a["label_id"]] == a["label"] for a in entry["annotations"])
            sample = dataset[i]  # cltdr's own segments on the grid, labels as class indices
            ours = sorted((int(k), *map(float, s)) for s, k in zip(sample.segments, sample.labels))
            np.testing.assert_allclose(np.asarray(theirs[rec.video_id]), np.asarray(ours), rtol=0, atol=1e-4)


def test_their_config_takes_inputs_and_schedule_and_keeps_their_model(ct, tiny_data, write_config, tmp_path):
    cfg = load_config(write_config(tiny_data, train={"epochs": 7, "warmup_epochs": 3, "seed": 11}))
    template = {
        "train_split": ["validation"],
        "val_split": ["test"],
        "dataset": {"json_file": "x.json", "num_classes": 20, "input_dim": 2048, "trunc_thresh": 0.5},
        "model": {"backbone_arch": [2, 2, 5], "num_bins": 16},
        "opt": {"learning_rate": 1e-4, "warmup_epochs": 20, "epochs": 20, "weight_decay": 0.025},
        "loader": {"batch_size": 2},
        "output_folder": "./ckpt/",
    }
    theirs = ct.their_config(template, cfg, tmp_path / "a.json", 5, tmp_path)
    d = theirs["dataset"]
    assert theirs["train_split"] == [cfg.dataset.train_subset.lower()]
    assert theirs["val_split"] == [cfg.dataset.test_subset.lower()]
    assert d["json_file"] == str(tmp_path / "a.json") and d["num_classes"] == 5
    assert Path(d["feat_folder"]) == Path(cfg.dataset.feat_dir).resolve()
    assert (d["input_dim"], d["feat_stride"], d["num_frames"], d["max_seq_len"]) == (
        cfg.dataset.input_dim,
        cfg.dataset.feat_stride,
        cfg.dataset.num_frames,
        cfg.dataset.max_seq_len,
    )
    assert d["trunc_thresh"] == 0.5  # their augmentation stays theirs
    assert theirs["opt"] == {"learning_rate": cfg.train.lr, "warmup_epochs": 3, "epochs": 7, "weight_decay": 0.025}
    assert theirs["loader"]["batch_size"] == cfg.train.batch_size and theirs["init_rand_seed"] == 11
    assert theirs["model"] == template["model"] and template["dataset"]["num_classes"] == 20  # a copy was changed
    yaml.safe_dump(theirs)  # their loader reads YAML: plain types only


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120)


def test_without_a_checkout_it_says_what_it_expected_and_skips(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("{}")
    for args in ([], ["--tridet", str(tmp_path / "nowhere")]):
        out = run_bench(str(config), *args)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == "skipped" and "expected --released PATH" in out.stdout


def fake_tridet(root: Path) -> Path:
    """A folder that passes the checkout check (the files exist, the meta arch is named) but whose code raises."""
    for f in ("libs/core/config.py", "libs/utils/nms.py", "configs/thumos_i3d.yaml", "libs/modeling/meta_archs.py"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text('raise ImportError("broken")  # register_meta_arch("TriDet")\n')
    return root


def test_a_missing_annotation_file_is_named_with_status_2(tiny_data, write_config, tmp_path):
    fake = fake_tridet(tmp_path / "tridet")  # the config is read before their code is touched
    config = write_config(tiny_data, dataset={"annotation_file": str(tmp_path / "missing.json")})
    out = run_bench(str(config), "--tridet", str(fake), "--out", str(tmp_path / "runs"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr and "missing.json" in out.stdout


def test_compare_released_skips_a_checkout_whose_code_does_not_import(tmp_path):
    bench = BENCH.parent / "compare_released.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--tridet", str(fake_tridet(tmp_path / "tridet"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "does not import (ImportError: broken)" in out.stdout and out.stdout.splitlines()[-1] == "skipped"


def test_timed_stamps_each_line_and_epoch_seconds_sums_their_epochs(ct, tmp_path):
    # a stand-in for their train.py: two epochs of 0.2 s with a pause between them
    script = (
        "import time\n"
        "for n in range(2):\n"
        "    print(f'[Train]: Epoch {n} started'); time.sleep(0.2)\n"
        "    print(f'[Train]: Epoch {n} finished with lr=0.1'); time.sleep(0.3)\n"
        "print('All done! \\u00e9')\n"
    )
    log = tmp_path / "run.log"
    wall = ct.timed([sys.executable, "-c", script], tmp_path, dict(os.environ), log)
    lines = log.read_text().splitlines()
    assert lines[-1].split(maxsplit=1)[1] == "All done! \u00e9"
    stamps = [float(line.split()[0]) for line in lines]
    assert stamps == sorted(stamps) and stamps[-1] <= wall + 0.01  # stamps are rounded to 0.01 s
    inside = ct.epoch_seconds(log)
    assert 0.35 <= inside < wall - 0.5  # two epochs of 0.2 s (stamps to 0.01 s); the pauses are outside
    assert ct.epoch_seconds(tmp_path / "run.log") == inside
    (tmp_path / "cltdr.log").write_text("   12.00 training done\n")
    assert ct.epoch_seconds(tmp_path / "cltdr.log") is None


def test_a_failed_run_ends_the_script_with_its_log_tail(ct, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cmd = [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]
        ct.timed(cmd, tmp_path, dict(os.environ), tmp_path / "x")
    assert exit_.value.code == 2
    out = capsys.readouterr().out
    assert "failed with status 3" in out and "boom" in out
