"""bench/compare_training.py: what the competitors' train.py is given (no training here); both comparison scripts
skip a checkout they cannot use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cltdr.config import load_config
from cltdr.data.build import class_names, load_split, make_dataset
from cltdr.evaluation.inputs import validate_predictions

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


# ------------------------------------------------------------------------------------------------ scoring
THEIR_PREDICTIONS = BENCH.parent / "their_predictions.py"

# A stand-in for their code with their entry points (config loader, dataset factory, meta-arch factory): its model
# returns one detection per video whose score is its single weight, so the file shows which weights were loaded.
FAKE_LIBS = {
    "libs/__init__.py": "",
    "libs/core/__init__.py": "import json\ndef load_config(path):\n    return json.load(open(path))\n",
    "libs/datasets/__init__.py": (
        "import json\n"
        "def make_dataset(name, is_training, split, json_file, **kwargs):\n"
        "    assert name == 'thumos' and not is_training\n"
        "    db = json.load(open(json_file))['database']\n"
        "    return [{'video_id': v} for v, e in db.items() if e['subset'] in split]\n"
    ),
    "libs/modeling/__init__.py": (
        "import torch\n"
        "class Model(torch.nn.Module):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.zeros(1))\n"
        "    def forward(self, video_list):\n"
        "        assert not self.training and len(video_list) == 1\n"
        "        return [{'video_id': v['video_id'], 'segments': torch.tensor([[1.0, 2.5]]),\n"
        "                 'scores': self.w.detach().clone(), 'labels': torch.tensor([1])} for v in video_list]\n"
        "def make_meta_arch(name, **kwargs):\n"
        "    return Model(**kwargs)\n"
    ),
}


def fake_checkout(root: Path) -> tuple[Path, Path, Path]:
    """Their stand-in code, a config and a checkpoint as their train.py saves it (DataParallel's prefix)."""
    for name, text in FAKE_LIBS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    database = {
        "a": {"subset": "test", "annotations": [{"label": "jump", "label_id": 1, "segment": [1.0, 2.0]}]},
        "b": {"subset": "train", "annotations": [{"label": "run", "label_id": 0, "segment": [0.0, 1.0]}]},
    }
    (root / "ann.json").write_text(json.dumps({"database": database}))
    config = root / "their.yaml"
    config.write_text(
        json.dumps(
            {
                "dataset_name": "thumos",
                "val_split": ["test"],
                "dataset": {"json_file": str(root / "ann.json")},
                "model_name": "X",
                "model": {},
            }
        )
    )
    checkpoint = root / "epoch_003.pth.tar"
    torch.save(
        {"state_dict": {"module.w": torch.tensor([0.25])}, "state_dict_ema": {"module.w": torch.tensor([0.75])}},
        checkpoint,
    )
    return root, config, checkpoint


def test_their_predictions_come_from_the_weights_asked_for_in_cltdr_s_format(tmp_path):
    root, config, checkpoint = fake_checkout(tmp_path / "theirs")
    for weights, score in (("ema", 0.75), ("raw", 0.25)):
        out = tmp_path / weights / "p.json"
        # relative paths are taken from where it was started, before it enters their checkout
        run = subprocess.run(
            [
                sys.executable,
                str(THEIR_PREDICTIONS),
                "theirs",
                "theirs/their.yaml",
                "theirs/epoch_003.pth.tar",
                f"{weights}/p.json",
                "--weights",
                weights,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        results = json.loads(out.read_text())["results"]
        assert results == {"a": [{"label": "jump", "score": score, "segment": [1.0, 2.5]}]}  # test subset only
        validate_predictions(json.loads(out.read_text()), str(out), True)


def test_their_predictions_name_a_missing_checkpoint_or_weights_with_status_2(tmp_path):
    root, config, checkpoint = fake_checkout(tmp_path / "theirs")
    torch.save({"state_dict": {"module.w": torch.tensor([0.25])}}, root / "no_ema.pth.tar")
    for ckpt, expected in (
        (root / "missing.pth.tar", "missing.pth.tar is not a file"),
        (root / "no_ema.pth.tar", "no_ema.pth.tar holds no 'state_dict_ema'"),
    ):
        run = subprocess.run(
            [sys.executable, str(THEIR_PREDICTIONS), str(root), str(config), str(ckpt), str(tmp_path / "p.json")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2 and expected in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert not (tmp_path / "p.json").exists()


def test_the_last_epoch_s_checkpoint_is_scored(ct, tmp_path, capsys):
    for name in ("epoch_009.pth.tar", "epoch_010.pth.tar", "bestmodel.pth.tar"):
        (tmp_path / name).touch()
    assert ct.last_checkpoint(tmp_path) == tmp_path / "epoch_010.pth.tar"
    with pytest.raises(SystemExit) as exit_:
        ct.last_checkpoint(tmp_path / "x")
    assert exit_.value.code == 2 and "holds no epoch_*.pth.tar" in capsys.readouterr().out


def test_only_the_last_epoch_s_checkpoint_is_kept(ct, tmp_path):
    names = ("epoch_002.pth.tar", "epoch_009.pth.tar", "epoch_010.pth.tar", "bestmodel.pth.tar", "log.txt")
    for name in names:
        (tmp_path / name).touch()
    ct.prune_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bestmodel.pth.tar", "epoch_010.pth.tar", "log.txt"]


def test_a_cltdr_run_scores_on_their_annotations_as_cltdr_test_scores_it(ct, trained_run, tmp_path):
    run = tmp_path / "cltdr-0"
    shutil.copytree(trained_run, run)
    cfg = load_config(run / "config.yaml")
    annotations, _ = ct.their_annotations(cfg)
    files = {w: ct.predictions("cltdr", run, w, None, None, dict(os.environ)) for w in ("ema", "raw")}
    figures = ct.scores(annotations, files, cfg.dataset.test_subset, cfg.test.tiou_thresholds)
    for weights, path in files.items():
        assert path == run / f"scored-{weights}" / "predictions.json"
        metrics = json.loads((path.parent / "metrics.json").read_text())  # `cltdr test`'s own evaluation
        assert figures[weights]["average"] == pytest.approx(metrics["average_mAP"], abs=1e-12)
        assert figures[weights]["mAP"] == pytest.approx(metrics["mAP"], abs=1e-12)
    assert figures["ema"]["average"] != figures["raw"]["average"]  # two different sets of weights were tested


def test_the_summary_rates_time_against_cltdr_and_shows_a_dash_without_it(ct, tmp_path):
    theirs, ours = tmp_path / "released-0.log", tmp_path / "cltdr-0.log"
    theirs.write_text("10.0 [Train]: Epoch 0 started\n14.5 [Train]: Epoch 0 finished\n")
    ours.write_text("")
    scored = [{"ema": {"average": 0.1}, "raw": {"average": 0.5}}, {"ema": {"average": 0.3}, "raw": {"average": 0.7}}]
    figures, rows = ct.summarise(
        {"cltdr": [100.0, 300.0], "released": [500.0, 300.0]},
        {"cltdr": [ours, ours], "released": [theirs, theirs]},
        {"cltdr": 10, "released": 8},
        {"cltdr": scored, "released": scored},
    )
    assert figures["released"]["ratio_to_cltdr"] == pytest.approx(2.0)  # median 400 s against 200 s
    assert figures["released"]["epoch_seconds"] == [4.5, 4.5]
    assert figures["cltdr"]["epoch_seconds"] == [None, None]
    assert rows[1].split()[-4:] == ["2.00", "20.00", "/", "60.00"]  # ratio, mean EMA / raw mAP in %

    alone, rows = ct.summarise({"released": [500.0]}, {"released": [theirs]}, {"released": 8}, {"released": scored[:1]})
    assert alone["released"]["ratio_to_cltdr"] is None
    assert rows[0].split()[-4:] == ["-", "10.00", "/", "50.00"]


def test_the_record_of_runs_is_what_real_data_tables(ct, bench_script, tmp_path):
    rd = bench_script("real_data")
    assert rd.data_and_split(tmp_path / "gtea-tcn" / "split3" / "annotations.json") == ("gtea-tcn", 3)
    assert rd.data_and_split(tmp_path / "mine" / "annotations.json") == ("mine", None)
    scores = [{"ema": {"average": 0.1, "mAP": {"0.30": 0.2}}, "raw": {"average": 0.5, "mAP": {"0.30": 0.6}}}]
    figures = {
        "cltdr": {"seconds": [90.0], "epoch_seconds": [None], "steps": 11, "ratio_to_cltdr": 1.0, "scores": scores},
        "released": {
            "seconds": [150.0],
            "epoch_seconds": [140.0],
            "steps": 10,
            "ratio_to_cltdr": 1.5,
            "scores": scores,
        },
    }
    path = tmp_path / "results" / "competitors.jsonl"
    context = {"threads": 1, "set": ["train.seed=7"], "commit": "abc", "date": "2026-12-04"}
    ct.record(path, ct.runs(figures, "gtea-tcn", 3, 7, context))
    ct.record(path, ct.runs({"released": figures["released"]}, "gtea-tcn", 4, 7, context))  # a second comparison adds
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["system"], e["split"], e["seed"], e["commit"]) for e in lines] == [
        ("cltdr", 3, 7, "abc"),
        ("released", 3, 7, "abc"),
        ("released", 4, 7, "abc"),
    ]
    theirs = rd.competitor_runs(path, "gtea-tcn", [3, 4], [7])
    assert theirs[("released_code", 3, 7)] == {
        "train_s": 150.0,
        "ema": 0.1,
        "ema_mAP": {"0.30": 0.2},
        "raw": 0.5,
        "raw_mAP": {"0.30": 0.6},
    }
    assert set(theirs) == {("released_code", 3, 7), ("released_code", 4, 7)}
