"""bench/real_data.py's record of finished runs and its paired comparison (no training here)."""

from __future__ import annotations

import json
import math
import statistics

import pytest


@pytest.fixture(scope="module")
def rd(bench_script):
    return bench_script("real_data")


def test_record_finds_a_run_by_its_whole_config_and_survives_a_reload(rd, tmp_path):
    path = tmp_path / "record.jsonl"
    record = rd.Record(path)
    default, other = rd.settings({}), rd.settings({"train.lr": 1e-3})
    assert default["train"]["lr"] == rd.RECIPE["train"]["lr"] and other["train"]["lr"] == 1e-3
    record.add("gtea-tcn", "default", 1, 2024, default, {"ema": 0.5, "raw": 0.49})
    record.add("gtea-tcn", "default", 1, 2024, default, {"ema": 0.9})  # already there: kept as it was

    again = rd.Record(path)
    assert again.find("gtea-tcn", 1, 2024, default) == {"ema": 0.5, "raw": 0.49}
    # another config, split, seed or data set is another run
    assert again.find("gtea-tcn", 1, 2024, other) is None
    assert again.find("gtea-tcn", 2, 2024, default) is None
    assert again.find("gtea-tcn", 1, 2025, default) is None
    assert again.find("other-set", 1, 2024, default) is None
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["variant"] == "default"
    # where it trained: a run of another CPU model (or a GPU) is another draw of the seed noise
    assert json.loads(lines[0])["machine"] == rd.machine("cpu") and "cores, torch " in rd.machine("cpu")
    assert [f.name for f in tmp_path.iterdir()] == ["record.jsonl"]  # no temporary left beside it


def test_two_writers_of_one_record_keep_each_others_runs(rd, tmp_path):
    # two lanes (processes) each read the record at start, then add their own runs
    path = tmp_path / "record.jsonl"
    cfg = rd.settings({})
    lane_a, lane_b = rd.Record(path), rd.Record(path)
    lane_a.add("gtea-tcn", "default", 1, 2024, cfg, {"ema": 0.5})
    lane_b.add("gtea-tcn", "default", 2, 2024, cfg, {"ema": 0.6})
    lane_b.add("gtea-tcn", "default", 1, 2024, cfg, {"ema": 0.7})  # lane A's run of the same config stays
    again = rd.Record(path)
    assert again.find("gtea-tcn", 1, 2024, cfg) == {"ema": 0.5}
    assert again.find("gtea-tcn", 2, 2024, cfg) == {"ema": 0.6}
    assert len(path.read_text().splitlines()) == 2


def test_a_broken_record_line_is_named_with_status_2(rd, tmp_path, capsys):
    path = tmp_path / "record.jsonl"
    path.write_text('{"data": "x"}\nnot json\n')
    with pytest.raises(SystemExit) as exit_:
        rd.Record(path)
    assert exit_.value.code == 2 and "record.jsonl:2: not a JSON line" in capsys.readouterr().err


def test_table_and_paired_difference_from_partial_records(rd):
    # b - a over (split, seed): +2, +4 and -1 points; the raw weights and times recorded for some runs only
    results = {
        ("a", 1, 1): {"ema": 0.50, "raw": 0.52, "train_s": 100.0, "ema_mAP": {"0.3": 0.6, "0.7": 0.4}},
        ("a", 1, 2): {"ema": 0.40},
        ("a", 2, 1): {"ema": 0.60},
        ("b", 1, 1): {"ema": 0.52},
        ("b", 1, 2): {"ema": 0.44},
        ("b", 2, 1): {"ema": 0.59},
    }
    text = rd.table(results, ["a", "b"], [1, 2], [1, 2], {1: [], 2: []})
    row_a = next(line for line in text.splitlines() if line.startswith("| a | ema"))
    assert "| 45.0 ± 7.1 | 60.0 | 52.5 | 7.1 | 60.0 / 40.0 | 100 | - | - |" in row_a
    row_a_raw = next(line for line in text.splitlines() if line.startswith("| a | raw"))
    assert "| 52.0 | - | 52.0 |" in row_a_raw

    diffs = [2.0, 4.0, -1.0]
    mean, std = statistics.mean(diffs), statistics.stdev(diffs)
    t = mean / (std / math.sqrt(3))
    assert rd.paired(results, ["a", "b"], [1, 2], [1, 2], {1: [], 2: []}) == (
        f"b - a (EMA, 3 paired runs): {mean:+.1f} ± {std:.1f} points, t = {t:.1f}"
    )


def competitor_line(system: str, split: int, seed: int, ema: float, raw: float, data: str = "gtea-tcn") -> str:
    """One run as bench/compare_training.py's record holds it."""
    scores = {w: {"average": v, "mAP": {"0.30": v + 0.1, "0.70": v - 0.1}} for w, v in (("ema", ema), ("raw", raw))}
    run = {"data": data, "split": split, "seed": seed, "system": system, "seconds": 900.0, "scores": scores}
    return json.dumps(run) + "\n"


def test_competitors_join_the_table_and_are_paired_by_their_raw_weights(rd, tmp_path):
    path = tmp_path / "competitors.jsonl"
    path.write_text(
        competitor_line("released", 1, 1, 0.07, 0.50)
        + competitor_line("released", 2, 1, 0.08, 0.58)
        + competitor_line("cltdr", 1, 1, 0.99, 0.99)  # cltdr's runs come from its own record
        + competitor_line("released", 3, 1, 0.1, 0.1)  # a split not asked for
        + competitor_line("released", 1, 2, 0.1, 0.1)  # a seed not asked for
        + competitor_line("released", 1, 1, 0.1, 0.1, data="other")
        + "\n"
    )
    theirs = rd.competitor_runs(path, "gtea-tcn", [1, 2], [1])
    assert set(theirs) == {("released_code", 1, 1), ("released_code", 2, 1)}
    assert theirs[("released_code", 1, 1)] == {
        "train_s": 900.0,
        "ema": 0.07,
        "ema_mAP": {"0.30": pytest.approx(0.17), "0.70": pytest.approx(-0.03)},
        "raw": 0.50,
        "raw_mAP": {"0.30": pytest.approx(0.6), "0.70": pytest.approx(0.4)},
    }
    ours = {("default", 1, 1): {"ema": 0.53}, ("default", 2, 1): {"ema": 0.57}}
    no_classes = {1: [], 2: []}
    text = rd.paired(
        {**ours, **theirs}, ["default", "released_code"], [1, 2], [1], no_classes, {"released_code": "raw"}
    )
    diffs = [-3.0, 1.0]  # their raw 50 and 58 against our EMA 53 and 57
    mean, std = statistics.mean(diffs), statistics.stdev(diffs)
    t = mean / (std / math.sqrt(2))
    assert (
        text == f"released_code - default (raw against EMA, 2 paired runs): {mean:+.1f} ± {std:.1f} points, t = {t:.1f}"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "no such record"),
        ('{"data": "gtea-tcn"}\n', "competitors.jsonl:1: not a run of"),
        ("{\n", ":1: not a run"),
    ],
)
def test_a_missing_or_broken_competitors_record_is_named_with_status_2(rd, tmp_path, capsys, text, expected):
    path = tmp_path / "competitors.jsonl"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        rd.competitor_runs(path, "gtea-tcn", [1], [1])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err


def test_table_only_tables_the_record_and_trains_nothing(rd, tmp_path, monkeypatch, capsys):
    record = tmp_path / "record.jsonl"
    rd.Record(record).add("gtea-tcn", "default", 1, 7, rd.settings({}), {"ema": 0.5, "raw": 0.4})
    competitors = tmp_path / "competitors.jsonl"
    competitors.write_text(competitor_line("released", 1, 7, 0.05, 0.45) + competitor_line("released", 2, 7, 0.05, 0.6))

    def no_training(*args):
        raise AssertionError("--table-only trained a run")

    monkeypatch.setattr(rd, "run_one", no_training)
    argv = ["real_data.py", "--data", str(tmp_path / "gtea-tcn"), "--out", str(tmp_path / "runs")]
    argv += ["--record", str(record), "--competitors", str(competitors), "--splits", "1", "2", "--seeds", "7"]
    monkeypatch.setattr("sys.argv", [*argv, "--table-only"])
    assert rd.main() == 0
    out = capsys.readouterr().out
    assert "('default', 2, 7): not recorded, left out" in out
    assert "| default | ema | 50.0 | - | 50.0 |" in out
    assert "| released_code | raw | 45.0 | 60.0 | 52.5 |" in out


def test_a_resumed_run_keeps_its_scores_but_claims_no_training_time(rd, tmp_path):
    # a stand-in for the cltdr command: `test` writes the metrics file, `train` nothing
    cltdr = tmp_path / "cltdr"
    cltdr.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = test ]; then while [ "$1" != --out ]; do shift; done; mkdir -p "$2"\n'
        '  echo \'{"average_mAP": 0.5, "mAP": {"0.50": 0.5}, "per_class_ap": {"a": {"0.50": 0.5}}}\' '
        '> "$2/metrics.json"; fi\n'
    )
    cltdr.chmod(0o755)
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    fresh.mkdir()
    resumed.mkdir()
    (resumed / "config.yaml").write_text("{}")  # an interrupted run's folder
    log = tmp_path / "log"
    assert rd.run_one(str(cltdr), fresh, tmp_path / "c.yaml", log)["train_s"] >= 0
    scores = rd.run_one(str(cltdr), resumed, tmp_path / "c.yaml", log)
    figures = {"mAP": {"0.50": 0.5}, "class_ap": {"a": 0.5}}
    assert scores == {"ema": 0.5, "raw": 0.5, **{f"{w}_{k}": v for w in ("ema", "raw") for k, v in figures.items()}}
    assert json.loads((resumed / rd.RESULT).read_text()) == scores


def test_a_failed_run_is_named_and_the_sweep_goes_on(rd, tmp_path, monkeypatch, capsys):
    def run_one(cltdr, run, config, log):
        if run.name == "seed-1":
            raise rd.subprocess.CalledProcessError(1, [cltdr, "train", str(config)])
        return {"ema": 0.5, "raw": 0.4}

    monkeypatch.setattr(rd, "run_one", run_one)
    record = tmp_path / "record.jsonl"
    argv = ["real_data.py", "--data", str(tmp_path / "gtea-tcn"), "--out", str(tmp_path / "runs")]
    monkeypatch.setattr("sys.argv", [*argv, "--record", str(record), "--splits", "1", "--seeds", "1", "2"])
    assert rd.main() == 1
    err = capsys.readouterr().err
    log = tmp_path / "runs" / "default" / "split1" / "seed-1.log"
    assert f"1 run(s) failed, left out of the table:\n('default', 1, 1): `train {log.parent / 'seed-1.yaml'}`" in err
    assert f"exited with status 1, see {log}" in err
    (entry,) = [json.loads(line) for line in record.read_text().splitlines()]  # the other seed's run, recorded
    assert entry["seed"] == 2


def test_frequent_classes_are_counted_in_the_test_subset_and_lower_the_noise_of_rare_ones(rd, tmp_path):
    # class "often": 5 test actions; "rarely": 1 test action (and 6 training ones, which do not count)
    database = {
        "t1": {
            "subset": "test",
            "duration": 100.0,
            "annotations": [{"segment": [i, i + 1], "label": "often"} for i in range(5)]
            + [{"segment": [50, 60], "label": "rarely"}],
        },
        "v1": {
            "subset": "train",
            "duration": 100.0,
            "annotations": [{"segment": [i, i + 1], "label": "rarely"} for i in range(6)],
        },
    }
    (tmp_path / "annotations.json").write_text(json.dumps({"database": database}))
    assert rd.frequent_classes(tmp_path, "test") == ["often"]
    assert rd.frequent_classes(tmp_path, "train") == ["rarely"]

    metrics = {"per_class_ap": {"often": {"0.3": 0.8, "0.7": 0.4}, "rarely": {"0.3": 1.0, "0.7": 0.0}}}
    assert rd.class_ap(metrics) == {"often": pytest.approx(0.6), "rarely": pytest.approx(0.5)}

    # b - a: +10 and -30 points on the whole mAP, +2 and 0 on the frequent class
    results = {
        ("a", 1, 1): {"ema": 0.50, "ema_class_ap": {"often": 0.60, "rarely": 0.40}},
        ("a", 1, 2): {"ema": 0.60, "ema_class_ap": {"often": 0.50, "rarely": 0.70}},
        ("b", 1, 1): {"ema": 0.60, "ema_class_ap": {"often": 0.62, "rarely": 0.58}},
        ("b", 1, 2): {"ema": 0.30, "ema_class_ap": {"often": 0.50, "rarely": 0.10}},
        ("a", 2, 1): {"ema": 0.55},  # recorded before per-class AP: in the whole-mAP figures only
        ("b", 2, 1): {"ema": 0.45},
    }
    frequent = {1: ["often"], 2: ["often"]}
    line = rd.paired(results, ["a", "b"], [1, 2], [1, 2], frequent)
    assert line.startswith("b - a (EMA, 3 paired runs): -10.0 ± 20.0 points, t = -0.9;")
    assert line.endswith("; on the classes with 5+ test actions (2 paired runs): +1.0 ± 1.4 points, t = 1.0")
    row_b = next(
        r for r in rd.table(results, ["a", "b"], [1, 2], [1], frequent).splitlines() if r.startswith("| b | ema")
    )
    assert row_b.endswith("| 62.0 | - |")  # split 1's only seed here, no seed std
    row_a = next(
        r for r in rd.table(results, ["a", "b"], [1, 2], [1, 2], frequent).splitlines() if r.startswith("| a | ema")
    )
    assert row_a.endswith("| 55.0 | 7.1 |")


def test_a_run_scored_without_a_frequent_class_is_named_not_counted_as_zero(rd, tmp_path, monkeypatch, capsys):
    split = tmp_path / "gtea-tcn" / "split1"
    split.mkdir(parents=True)
    actions = [{"segment": [i, i + 1], "label": "often"} for i in range(5)]
    video = {"subset": "test", "duration": 100.0, "fps": 1.0, "annotations": actions}
    (split / "annotations.json").write_text(json.dumps({"database": {"t1": video}}))
    record = tmp_path / "record.jsonl"
    scores = {"ema": 0.5, "ema_class_ap": {"other": 0.5}}  # scored on other annotations
    rd.Record(record).add("gtea-tcn", "default", 1, 7, rd.settings({}), scores)
    argv = ["real_data.py", "--data", str(tmp_path / "gtea-tcn"), "--out", str(tmp_path / "runs")]
    monkeypatch.setattr("sys.argv", [*argv, "--record", str(record), "--splits", "1", "--seeds", "7", "--table-only"])
    with pytest.raises(SystemExit) as exit_:
        rd.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "run ('default', split 1, seed 7): its ema per-class AP lacks ['often']" in err
