"""`cltdr ablate`: a tiny two-variant table end to end, resuming a half-done one; spec validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from cltdr import cli
from cltdr.ablate import config_record, finished_result, load_spec, variant_config
from cltdr.config import config_from_dict
from cltdr.errors import CltdrError, ConfigError
from cltdr.model import build_detector, count_parameters
from cltdr.runs import RunDir, load_checkpoint
from cltdr.training.trainer import Trainer
from cltdr.utils.hardware import processor_name

ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"


def _spec(tmp_path: Path, base: Path, variants: dict, **extra) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "title": "tiny table",
                "base": base.name,
                "latency": {"videos": 2, "length": 64},
                "variants": variants,
                **extra,
            },
            sort_keys=False,
        )
    )
    return path


def _row(table: str, name: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {name} |"))


def test_ablate_writes_the_table_and_resumes_a_half_done_one(tiny_data, write_config, tmp_path, monkeypatch, capsys):
    base = write_config(tiny_data, train={"epochs": 2, "warmup_epochs": 0})
    spec = _spec(tmp_path, base, {"full": {}, "no_gate": {"model.gmg.gate": False}})
    out = tmp_path / "out"
    argv = ["ablate", str(spec), "--out", str(out), "--quiet"]

    # First session: interrupted in the second epoch of the second variant.
    real_epoch = Trainer.train_epoch

    def interrupted(self, logger):
        if self.run.root.name == "no_gate" and self.epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self, logger)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    assert cli.main(argv) == 130
    assert "again to continue" in capsys.readouterr().err
    runs = out / "runs"
    finished = (runs / "full" / "result.json").read_text()
    assert not (runs / "no_gate" / "result.json").exists()
    assert load_checkpoint(runs / "no_gate" / "checkpoints" / "last.pt")["epoch"] == 1
    assert "pending" in _row((out / "table.md").read_text(), "no_gate")

    # Second session: the finished variant is skipped, the half-trained one resumes at its second epoch.
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    started = []
    real_init = Trainer.__init__

    def recording_init(self, cfg, run_dir, **kwargs):
        real_init(self, cfg, run_dir, **kwargs)
        started.append((Path(run_dir).name, kwargs.get("resume"), self.epoch))

    monkeypatch.setattr(Trainer, "__init__", recording_init)
    assert cli.main(argv) == 0
    assert started == [("no_gate", True, 1)]
    assert (runs / "full" / "result.json").read_text() == finished
    assert load_checkpoint(runs / "no_gate" / "checkpoints" / "last.pt")["epoch"] == 2

    table = (out / "table.md").read_text()
    assert table in capsys.readouterr().out  # the command prints it too
    assert f"on {processor_name()} (" in table and "mAP@0.30" in table and "mAP@0.70" in table
    cfg = variant_config(load_spec(spec), "no_gate")
    row = _row(table, "no_gate").split("|")
    assert "`model.gmg.gate=false`" in row[2]
    assert float(row[-3]) == round(count_parameters(build_detector(cfg, 4)) / 1e6, 2)
    assert 0 <= float(row[8].strip(" *")) <= 100 and float(row[-2]) > 0

    # A finished variant whose spec changed is not silently reused.
    _spec(tmp_path, base, {"full": {"train.epochs": 3}, "no_gate": {"model.gmg.gate": False}})
    assert cli.main(argv) == 2
    assert "train.epochs: 2 -> 3" in capsys.readouterr().err


def test_spec_errors_name_the_key(tmp_path, tiny_data, write_config):
    base = write_config(tiny_data)
    with pytest.raises(ConfigError, match="unknown key 'variant'"):
        load_spec(_spec(tmp_path, base, {"a": {}}, variant={}))
    with pytest.raises(ConfigError, match="variant name 'a b'"):
        load_spec(_spec(tmp_path, base, {"a b": {}}))
    spec = load_spec(_spec(tmp_path, base, {"a": {"model.gmg.gat": False}}))
    with pytest.raises(ConfigError, match="(?s)variant 'a'.*unknown key 'model.gmg.gat'"):
        variant_config(spec, "a")
    with pytest.raises(ConfigError, match="ablation spec .* does not exist"):
        load_spec(tmp_path / "missing.yaml")
    assert cli.main(["ablate", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "o"), "--only", "b"]) == 2


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path):
    if path.name.endswith("_base.yaml"):
        return
    spec = load_spec(path)
    assert spec.base.is_file()
    for name in spec.variants:
        variant_config(spec, name)


def test_ablate_with_seeds_shows_mean_and_std(tiny_data, write_config, tmp_path, capsys):
    """--seeds 2: each variant trains seeds S and S + 1 into runs/<name>/seed-<S>; the row is their mean ± std."""
    import json
    import statistics

    base = write_config(tiny_data, train={"epochs": 1, "warmup_epochs": 0, "seed": 5})
    spec = _spec(tmp_path, base, {"full": {}})
    out = tmp_path / "out"
    assert cli.main(["ablate", str(spec), "--out", str(out), "--quiet", "--seeds", "2"]) == 0
    capsys.readouterr()
    per_seed = [json.loads((out / "runs" / "full" / f"seed-{s}" / "result.json").read_text()) for s in (5, 6)]
    assert [r["seed"] for r in per_seed] == [5, 6]
    values = [r["average_mAP"] for r in per_seed]
    cell = _row((out / "table.md").read_text(), "full").split("|")[8].strip(" *")
    assert cell == f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"
    assert "2 training seeds" in (out / "table.md").read_text()


def test_train_seeds_reports_mean_and_std_and_resumes(tiny_data, write_config, tmp_path, capsys, monkeypatch):
    import json
    import statistics

    config = write_config(tiny_data, train={"epochs": 1, "warmup_epochs": 0, "seed": 3})
    out = tmp_path / "seeds"
    assert cli.main(["train", str(config), "--out", str(out), "--seeds", "2", "--quiet"]) == 0
    shown = capsys.readouterr().out
    summary = json.loads((out / "seeds.json").read_text())
    per_seed = [json.loads((out / f"seed-{s}" / "result.json").read_text())["average_mAP"] for s in (3, 4)]
    assert summary["seeds"] == [3, 4] and summary["per_seed"] == per_seed
    assert abs(summary["average_mAP"] - statistics.fmean(per_seed)) < 1e-12
    assert abs(summary["average_mAP_std"] - statistics.stdev(per_seed)) < 1e-12
    assert "2 seeds [3, 4]: average mAP" in shown and "±" in shown
    assert (out / "seed-4" / "metrics.json").is_file() and (out / "seed-4" / "predictions.json").is_file()
    # the seeds differ (initialisation and crops follow train.seed)
    a = load_checkpoint(out / "seed-3" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(out / "seed-4" / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)

    # again without --resume: refused; with it, finished seeds are kept and nothing trains
    assert cli.main(["train", str(config), "--out", str(out), "--seeds", "2", "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("a finished seed was trained again"))
    assert cli.main(["train", str(config), "--out", str(out), "--seeds", "2", "--resume", "--quiet"]) == 0
    assert cli.main(["train", str(config), "--out", str(out), "--seeds", "0", "--quiet"]) == 2


def test_a_finished_result_is_reused_only_with_its_config(tmp_path):
    """A variant's result is kept when it was obtained with the same config, also when it predates a key whose
    value then was the one older runs get (``runs.RUN_KEYS_BEFORE``); any other difference names the key: a
    result from before the depth-wise RefineHead became the default is not today's default. A model section the
    variant does not read is not compared."""
    from cltdr.utils.io import atomic_write_json

    data = {"dataset": {"annotation_file": "a.json", "feat_dir": "f"}}
    full = config_from_dict({**data, "model": {"cltdr": {"refine_depthwise": False}}})
    run = tmp_path / "v" / "seed-2024"
    assert finished_result(run, full) is None
    run.mkdir(parents=True)
    record = config_record(full)
    atomic_write_json(RunDir(run).result, {"avg_mAP": 0.5, "config": record})
    assert finished_result(run, full)["avg_mAP"] == 0.5
    older = {k: v for k, v in record.items() if k != "model.cltdr.refine_depthwise"}  # before the key existed
    atomic_write_json(RunDir(run).result, {"avg_mAP": 0.5, "config": older})
    assert finished_result(run, full)["avg_mAP"] == 0.5
    with pytest.raises(CltdrError, match=r"model.cltdr.refine_depthwise: False -> True.*delete"):
        finished_result(run, config_from_dict(data))
    # A TriDet-decoder result written while config_record kept the sections a model does not read holds
    # model.cltdr at the defaults of its day; that decoder never read them, so the result is still today's.
    trident = config_from_dict({**data, "model": {"decoder": "trident"}})
    assert not any(k.startswith("model.cltdr.") for k in config_record(trident))
    atomic_write_json(RunDir(run).result, {"avg_mAP": 0.4, "config": {**record, **config_record(trident)}})
    assert finished_result(run, trident)["avg_mAP"] == 0.4
    atomic_write_json(RunDir(run).result, {"avg_mAP": 0.5, "config": record})
    with pytest.raises(CltdrError, match=r"model.decoder: 'cltdr' -> 'trident'"):
        finished_result(run, trident)
