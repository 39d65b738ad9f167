"""Training on real clip features (GTEA, ``../shared/data/gtea-tcn``): a regression on real data is caught.

Skipped when the development set is absent. The features are read in place, never copied into the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cltdr import cli

GTEA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gtea-tcn" / "split1"
# A narrow model at a higher learning rate, so that the test takes a minute, with the default recipe otherwise:
# EMA 0.999 with its warm-up, the loss normaliser from the first batch.
MODEL = {"embed_dim": 64, "head_dim": 64, "ffn_dim": 96, "num_levels": 6}
TRAIN = {"epochs": 16, "warmup_epochs": 4, "lr": 1e-3, "batch_size": 2, "device": "cpu", "seed": 2024}
# Average mAP (tIoU 0.3:0.1:0.7) on split 1's 7 test videos, measured on a 2-core CPU: 0.475 with the EMA, 0.469
# with the raw weights; with the paper's conv filter (model.gmg.filter: conv, the default up to 0.3.0) 0.434 /
# 0.438, and with the full RefineHead convs as well 0.454 / 0.455 (seed 2025: 0.431 / 0.434). With the conv
# filter's convs at PyTorch's default init (model.gmg.filter_init_std: null) the same recipe scored 0.301 / 0.310,
# and 0.294 / 0.284 with the coarse outputs' loss varifocal as well (the defaults before 0.2.0); the constant-decay
# EMA of the THUMOS14-size model scored 0.049 on this split.
MIN_MAP = 0.40


@pytest.mark.skipif(not (GTEA / "annotations.json").is_file(), reason=f"GTEA development set not found at {GTEA}")
def test_training_on_gtea_reaches_a_minimum_map(tmp_path, capsys):
    config = tmp_path / "gtea.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "annotation_file": str(GTEA / "annotations.json"),
                    "feat_dir": str(GTEA / "features"),
                    "train_subset": "train",
                    "test_subset": "test",
                    "input_dim": 128,
                    "feat_stride": 1,
                    "num_frames": 1,
                    "default_fps": 1.0,
                    "max_seq_len": 1024,
                },
                "model": MODEL,
                "train": TRAIN,
            }
        )
    )
    run = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(run), "--quiet"]) == 0
    scores = {}
    for weights in ("ema", "raw"):
        assert cli.main(["test", str(run), "--quiet", "--weights", weights, "--out", str(tmp_path / weights)]) == 0
        scores[weights] = json.loads((tmp_path / weights / "metrics.json").read_text())
    capsys.readouterr()
    shown = {w: (round(s["average_mAP"], 3), s["mAP"]) for w, s in scores.items()}
    print("GTEA split 1, short recipe:", shown)
    assert scores["ema"]["average_mAP"] >= MIN_MAP, shown
    # a short schedule (176 steps): the warmed-up EMA scores at least as well as the raw weights
    assert scores["ema"]["average_mAP"] >= scores["raw"]["average_mAP"] - 0.01, shown
