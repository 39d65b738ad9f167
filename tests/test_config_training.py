"""Config validation, the schedule, EMA and atomic checkpoints."""

from __future__ import annotations

import math
import os

import pytest
import torch

from cltdr.config import config_from_dict, load_config
from cltdr.errors import CheckpointError, ConfigError
from cltdr.runs import check_compatible, flatten, load_checkpoint, lookup_key, save_checkpoint
from cltdr.training.ema import ModelEMA
from cltdr.training.schedule import warmup_cosine
from cltdr.utils.io import atomic_write

BASE = {"dataset": {"annotation_file": "a.json", "feat_dir": "f"}}


def test_defaults_are_the_thumos_i3d_setting():
    cfg = config_from_dict(BASE)
    assert cfg.model.embed_dim == 512 and cfg.model.num_levels == 6 and cfg.model.num_bins == 16
    assert cfg.model.level_ranges() == [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, math.inf)]
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.warmup_epochs) == (1e-4, 2, 20, 20)
    assert cfg.train.weight_decay == 0.035 and cfg.train.clip_grad_norm == 1.0
    assert cfg.test.tiou_thresholds == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert cfg.divisor == 32


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: {annotation_file: a, feat_dir: f}\nmodel: {embed_dims: 3}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*\n.*unknown key 'model\.embed_dims'"):
        load_config(path)


def test_wrong_type_and_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: {annotation_file: a, feat_dir: f}\ntrain: {lr: fast, batch_size: 0}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "train.lr" in str(e.value) and "'fast'" in str(e.value) and "train.batch_size" in str(e.value)


def test_missing_file_bad_yaml_and_missing_key(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "m.yaml").write_text("dataset: {feat_dir: f}\n")
    with pytest.raises(ConfigError, match="missing key 'dataset.annotation_file'"):
        load_config(tmp_path / "m.yaml")


def test_overrides_are_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: {annotation_file: a, feat_dir: f}\n")
    cfg = load_config(path, ["train.lr=2e-4", "test.tiou_thresholds=[0.5, 0.75]", "dataset.val_subset=null"])
    assert cfg.train.lr == 2e-4 and cfg.test.tiou_thresholds == [0.5, 0.75]
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        load_config(path, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["train.lr"])


def test_pyramid_longer_than_crop_is_rejected():
    with pytest.raises(ConfigError, match="max_seq_len=16.*32"):
        config_from_dict({"dataset": {**BASE["dataset"], "max_seq_len": 16}})
    with pytest.raises(ConfigError, match="regression_range has 2 entries"):
        config_from_dict({**BASE, "model": {"regression_range": [[0, 4], [4, 1000]]}})


# ---------------------------------------------------------------------------------------------- training
def test_warmup_cosine():
    vals = [warmup_cosine(s, warmup_steps=4, total_steps=12) for s in range(13)]
    assert vals[:4] == [0.25, 0.5, 0.75, 1.0]
    for s in range(4, 13):  # cosine from 1 to 0 over the 8 steps after warm-up
        assert abs(vals[s] - 0.5 * (1 + math.cos(math.pi * (s - 4) / 8))) < 1e-12
    assert vals[12] < 1e-12


def test_ema_update():
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=0)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * model.weight.detach())


def test_ema_decay_warm_up():
    """min(decay, (1 + n) / (10 + n)): the decay grows with the step and is capped at the configured one."""
    from cltdr.training.ema import ema_decay_at

    assert ema_decay_at(0, 0.999, True) == 0.1
    for n in (1, 10, 59, 500, 4000):
        assert abs(ema_decay_at(n, 0.999, True) - (1 + n) / (10 + n)) < 1e-12
    assert ema_decay_at(8991, 0.999, True) == 0.999 and ema_decay_at(10**6, 0.999, True) == 0.999
    assert ema_decay_at(3, 0.999, False) == 0.999
    decays = [ema_decay_at(n, 0.999, True) for n in range(20000)]
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    # A short schedule (60 steps) forgets its start: the initial weights and step 10's keep under 1% of the
    # average after it (the constant decay keeps 94% for the initial weights).
    assert math.prod(decays[:60]) < 1e-3 and 0.999**60 > 0.94
    assert (1 - decays[10]) * math.prod(decays[11:60]) < 0.01


def test_ema_warm_up_tracks_the_weights():
    """On a weight moving by 1 per step (w(n) = n) an EMA of decay d lags d / (1 - d) steps behind: with the
    warm-up about a ninth of the steps so far, with the constant 0.999 hundreds of steps (it still holds the
    start)."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEMA(model, decay=0.999, warmup=True)
    plain = ModelEMA(model, decay=0.999)
    for n in range(300):
        with torch.no_grad():
            model.weight.fill_(float(n))
        ema.update(model, n)
        plain.update(model, n)
    lag = 299 - float(ema.module.weight)
    assert 25 < lag < 300 / 9 + 2, lag  # ~ (10 + n) / 9 - 1
    assert 299 - float(plain.module.weight) > 100


def test_checkpoint_round_trip_and_errors(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.ones(2)}})
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a cltdr checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def fail(f):
        f.write("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_checkpoint_from_another_config_names_the_keys():
    a = config_from_dict(BASE).model_dump(mode="json")
    b = config_from_dict({**BASE, "model": {"embed_dim": 256, "num_bins": 12}}).model_dump(mode="json")
    with pytest.raises(CheckpointError) as e:
        check_compatible(a, b, "run/last.pt")
    assert "model.embed_dim: checkpoint has 512, config has 256" in str(e.value)
    assert "model.num_bins" in str(e.value) and "run/last.pt" in str(e.value)
    check_compatible(a, config_from_dict({**BASE, "train": {"lr": 1.0}}).model_dump(mode="json"), "x")
    # A checkpoint written before a model key existed does not record it: not a difference (the run's
    # config.yaml says what it trained with, see run_config); a recorded key that differs is still an error.
    older = config_from_dict(BASE).model_dump(mode="json")
    del older["model"]["cltdr"]["shared_refine"]
    check_compatible(older, a, "old/last.pt")
    separate = config_from_dict({**BASE, "model": {"cltdr": {"shared_refine": False}}}).model_dump(mode="json")
    with pytest.raises(CheckpointError, match="model.cltdr.shared_refine: checkpoint has True"):
        check_compatible(a, separate, "run/last.pt")


def test_flatten_names_every_leaf_by_its_dotted_key():
    tree = {"model": {"embed_dim": 512, "cltdr": {"gate": True, "bins": [1, 2]}, "empty": {}}, "seed": 3}
    flat = {"model.embed_dim": 512, "model.cltdr.gate": True, "model.cltdr.bins": [1, 2], "seed": 3}
    assert flatten(tree) == flat
    assert flatten(tree["model"], "model") == {k: v for k, v in flat.items() if k.startswith("model.")}
    assert flatten(7, "seed") == {"seed": 7}  # a leaf under its own key
    assert all(lookup_key(tree, key) == value for key, value in flat.items())  # the inverse of lookup_key
    full = config_from_dict(BASE).model_dump(mode="json")
    assert lookup_key(full, "model.cltdr.shared_refine") == flatten(full)["model.cltdr.shared_refine"]


def test_shipped_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    paths = sorted((root / "configs").glob("*.yaml")) + [root / "src" / "cltdr" / "configs" / "demo.yaml"]
    assert len(paths) >= 3
    for path in paths:
        load_config(path)


def test_atomic_outputs_get_ordinary_file_permissions(tmp_path):
    from cltdr.utils import io

    path = atomic_write(tmp_path / "out.txt", lambda f: f.write("x"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~io._UMASK  # not mkstemp's owner-only 0o600


def test_recipe_schedule_in_steps_and_what_the_ema_averages():
    from cltdr.training.recipe import schedule

    s = schedule(21, 2, 5, 20, 0.999, False)  # GTEA's 21 videos, the held-out recipe, constant decay
    assert (s.iters_per_epoch, s.warmup_steps, s.total_steps) == (11, 55, 275)
    assert abs(s.initial_share - 0.999**275) < 1e-12 and abs(s.ema_horizon - 1000) < 1e-6
    w = schedule(21, 2, 5, 20, 0.999, True)
    assert w.initial_share < 1e-6 and abs(w.ema_horizon - (10 + 274) / 9) < 1e-6  # 1 / (1 - d) at the last step
    assert schedule(21, 2, 5, 20, None, True).ema_horizon is None


def test_check_warns_when_the_ema_keeps_the_initial_weights(tiny_data, write_config, capsys):
    from cltdr import cli

    config = write_config(tiny_data, train={"ema_decay": 0.999, "ema_warmup": False})
    assert cli.main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "still holds 99% of the initial weights" in out  # 0.999^8: 2 epochs of 4 iterations
    assert "optimiser steps" in out
    config = write_config(tiny_data, name="warm.yaml", train={"ema_decay": 0.999})
    assert cli.main(["check", str(config)]) == 0
    assert "initial weights after" not in capsys.readouterr().out


def test_a_run_saved_before_a_model_key_existed_keeps_its_architecture(tmp_path):
    """config.yaml of an older run lacks the decoder's layout keys: loading fills in the values the run trained
    with (RUN_KEYS_BEFORE), not today's defaults, so its checkpoint still fits."""
    import yaml

    from cltdr.runs import RUN_KEYS_BEFORE, run_config

    data = config_from_dict(BASE).model_dump(mode="json")
    for key in RUN_KEYS_BEFORE:
        section, _, name = key.rpartition(".")
        node = data
        for part in section.split("."):
            node = node[part]
        del node[name]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    cfg = run_config(tmp_path)
    assert cfg.model.cltdr.depthwise is False and cfg.model.cltdr.shared_refine is False
    assert cfg.model.cltdr.offset_init == "default" and cfg.model.cltdr.clamp_refined is False
    assert cfg.loss.coarse_cls == "varifocal"  # resumed, it keeps training with its own loss
    assert cfg.model.gmg.filter == "conv"
    assert config_from_dict(BASE).model.cltdr.depthwise is True  # today's default differs
    assert config_from_dict(BASE).model.gmg.filter == "spectral"
    assert config_from_dict(BASE).loss.coarse_cls == "focal"
    # another decoder's run gets the loss key but no model.cltdr section
    data["model"]["decoder"] = "trident"
    del data["model"]["cltdr"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert run_config(tmp_path).loss.coarse_cls == "varifocal"


def test_a_section_a_run_does_not_read_holds_the_defaults_of_its_day(tmp_path):
    """config.yaml dumps every section; one the run does not read (model.cltdr of a TriDet-decoder run, the
    decoder and encoder sections of a released-variant run) holds the defaults of the day it was saved. Such a
    run still loads after those defaults change (validation requires today's in a section not read)."""
    import yaml

    from cltdr.config import unread_sections
    from cltdr.runs import run_config

    assert unread_sections({}) == {"released", "transformer", "sgp"}
    assert unread_sections({"decoder": "trident", "encoder": "sgp"}) == {"released", "transformer", "gmg", "cltdr"}
    assert unread_sections({"variant": "released"}) == {"gmg", "transformer", "sgp", "cltdr"}
    runs = {
        "trident": {"decoder": "trident"},
        "released": {"variant": "released", "ffn_dim": 768},
    }
    for name, model in runs.items():
        data = config_from_dict({**BASE, "model": model}).model_dump(mode="json")
        data["model"]["cltdr"]["refine_depthwise"] = False  # the default until 0.3.0
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump(data))
        cfg = run_config(run)
        assert cfg.model.cltdr.refine_depthwise is True, name
        with pytest.raises(ConfigError, match="model.cltdr is set"):  # config_from_dict alone refuses it
            config_from_dict(data)
        check_compatible(data, cfg.model_dump(mode="json"), "its checkpoint")  # which recorded the same dump
    assert cfg.model.variant == "released"
    # a section the run reads is kept as saved, also when today's default differs
    data = config_from_dict(BASE).model_dump(mode="json")
    data["model"]["cltdr"]["refine_depthwise"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert run_config(tmp_path).model.cltdr.refine_depthwise is False
    with pytest.raises(CheckpointError, match="model.cltdr.refine_depthwise: checkpoint has False"):
        check_compatible(data, config_from_dict(BASE).model_dump(mode="json"), "its checkpoint")


def test_an_unknown_device_is_a_config_error():
    """Issue 13, item 6: train.device=banana used to end in a traceback at the first tensor."""
    from cltdr.errors import ConfigError

    with pytest.raises(ConfigError, match="train.device"):
        config_from_dict(
            {"dataset": {"annotation_file": "a", "feat_dir": "b", "input_dim": 4}, "train": {"device": "banana"}}
        )
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        config_from_dict(
            {"dataset": {"annotation_file": "a", "feat_dir": "b", "input_dim": 4}, "train": {"device": ok}}
        )


def test_recipe_suggestions_keep_a_schedule_in_the_measured_envelope():
    """`cltdr check`'s schedule and width suggestions (cltdr.training.recipe): inside the measured recipes (GTEA
    5 + 20 epochs of 11 steps, THUMOS14 20 + 20 of 100) nothing; a short schedule is lengthened to >= 250 steps
    with a 20% warm-up, a warm-up outside 10-50% is moved; a narrow model at lr 1e-4 gets the paper's width."""
    from cltdr.training.recipe import MIN_STEPS, suggest_schedule, suggest_width

    assert suggest_schedule(11, 5, 20) is None and suggest_schedule(100, 20, 20) is None
    short = suggest_schedule(11, 5, 5)
    assert short is not None and short.keys == {"train.warmup_epochs": 5, "train.epochs": 18}
    assert (5 + 18) * 11 >= MIN_STEPS > (5 + 17) * 11
    no_warmup = suggest_schedule(100, 0, 30)
    assert no_warmup is not None and no_warmup.keys == {"train.warmup_epochs": 6, "train.epochs": 24}
    assert suggest_schedule(100, 30, 10) is not None  # 75% warm-up
    assert suggest_width(128, 1e-4).keys == {"model.embed_dim": 512, "model.head_dim": 512}
    assert suggest_width(128, 1e-3) is None and suggest_width(512, 1e-4) is None
