"""Recipes and variants on real clip features, over splits and seeds: the GTEA measurements (README, docs/gtea.md).

    python bench/real_data.py --data ../shared/data/gtea-tcn --out gtea-runs --jobs 2 \
        --variants default released trident actionformer --splits 1 2 3 4 --seeds 2024 2025 2026

Every (variant, split, seed) is one ``cltdr train`` of a config written from the recipe below (what a user
gets from ``configs/custom.yaml`` with the README's settings for such data) plus the variant's overrides, then
``cltdr test`` of its EMA and of its raw weights. Each runs as its own process on one thread, ``--jobs`` at a
time; a finished run is kept, so the same command continues after an interruption. A run that fails is named
with its log and left out of the table, the others go on, and the exit status is 1. The table gives, per variant
and weights, the mean +- std over seeds of each split and the mean over splits of the per-seed mean.
The dataset is read in place and never copied.

``--record FILE`` keeps every finished run's scores beyond its run folder, one JSON line each: the data set's folder
name, variant, split, seed, the config it trained with (the recipe with its overrides, less the paths), the scores,
the code's commit and the machine. A run the record already holds (same data, split, seed and config) is not trained
again, so runs of several sessions or machines add up to one table. The config is the one written, less the
defaults, so a change of a default rewrites the record: its earlier runs get the old value written out (as
``model.gmg.filter: conv``). ``bench/results/gtea-tcn.jsonl`` is the record of the GTEA figures (README, docs/gtea.md):

    python bench/real_data.py --data ../shared/data/gtea-tcn --out gtea-runs --record bench/results/gtea-tcn.jsonl \
        --variants default released_divisor --splits 1 2 3 4 --seeds 2024 2025 2026

``--competitors FILE`` adds to the table the competitors' own code, from the record of their whole trainings that
bench/compare_training.py's runs fill (``bench/results/gtea-tcn-competitors.jsonl``): rows ``released_code`` and
``tridet_code`` from that record's runs of the same data, splits and seeds (never trained here: their training needs
their checkouts). Their EMA (a constant decay) holds mostly the initial weights on such short schedules, so the
paired comparison takes their raw weights, the best they give, against the first variant's EMA. ``--table-only``
prints the table of what the records hold and trains nothing.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import NoReturn

import torch
import yaml

from cltdr.utils.hardware import processor_name
from cltdr.utils.io import atomic_write_json, atomic_write_text

# The recipe of issue 17's measurements: configs/custom.yaml with the THUMOS14 model, lr 1e-4,
# 5 warm-up + 20 epochs, batch 2, max_seq_len 1024. Grid: a step is a frame of the 128-d features.
RECIPE = {
    "dataset": {
        "train_subset": "train",
        "test_subset": "test",
        "input_dim": 128,
        "feat_stride": 1,
        "num_frames": 1,
        "default_fps": 1.0,
        "max_seq_len": 1024,
    },
    "train": {"epochs": 20, "warmup_epochs": 5, "lr": 1e-4, "batch_size": 2, "device": "cpu"},
}

# The released code's forms on the paper variant, by part (the switches of model.gmg, model.cltdr and loss that
# README "Ablations and model variants" lists), for ablating the two architectures' differences one at a time.
RELEASED_FORMS: dict[str, dict[str, object]] = {
    "encoder": {
        "model.gmg.filter": "spectral",
        "model.gmg.gate_form": "product",
        "model.gmg.gate_init": "zero",
        "model.gmg.instant_depthwise": True,
        "model.gmg.local_kernel": 1,
        "model.gmg.layer_scale": 1e-4,
        "model.gmg.stem_drop_path": False,
    },
    "decoder": {
        "model.cltdr.score": "logit_product",
        "model.cltdr.offsets": "grid",
        "model.cltdr.clff_depthwise": False,
        "model.cltdr.fusion_kernel": 1,
        "model.cltdr.depthwise": False,
        "model.cltdr.depthwise_up": False,
        "model.cltdr.refine_depthwise": False,
        "model.cltdr.boundary_input": "level",
        "model.cltdr.detach_boundary": True,
        "model.cltdr.center_scale": True,
        "model.cltdr.offset_kernel": 7,
        "model.cltdr.offset_init": "default",
    },
    "loss": {"loss.vfl_alpha": 0.25, "loss.cls_target": "binary", "loss.normalizer_init": 100.0},
}

# Variants: dotted overrides of the recipe. 'released' is the authors' architecture with their loss and
# schedule settings (configs/released/thumos14_i3d.yaml's model and loss sections); 'released_divisor' the same
# architecture on each video's own length (no max_seq_len canvas) with the project's loss settings.
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "filter_conv": {"model.gmg.filter": "conv"},  # eq. 2's filter as the paper writes it, the default up to 0.3.0
    "full_refine": {"model.cltdr.refine_depthwise": False, "model.gmg.filter": "conv"},  # the defaults of 0.3.0
    "no_gate": {"model.gmg.gate": False},  # eq. 4 without its gates, the paper's Table 7 ablation
    # single switches of the released decoder on the defaults
    "offset_k7": {"model.cltdr.offset_kernel": 7},
    "detach_bound": {"model.cltdr.detach_boundary": True},
    "center_scale": {"model.cltdr.center_scale": True},
    "boundary_level": {"model.cltdr.boundary_input": "level"},
    "released": {"model.variant": "released", "model.ffn_dim": 768, **RELEASED_FORMS["loss"]},
    "released_divisor": {"model.variant": "released", "model.ffn_dim": 768, "model.released.padding": "divisor"},
    "trident": {"model.decoder": "trident"},
    "actionformer": {"model.decoder": "actionformer"},
}
VARIANTS.update({f"released_{part}": forms for part, forms in RELEASED_FORMS.items()})


def set_key(tree: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def parse_value(text: str) -> object:
    return yaml.safe_load(text)


def settings(overrides: dict[str, object]) -> dict:
    """The recipe with a run's overrides: its config less the data's paths and the seed."""
    cfg = json.loads(json.dumps(RECIPE))
    for k, v in overrides.items():
        set_key(cfg, k, v)
    return cfg


def write_config(path: Path, split_dir: Path, cfg: dict, seed: int) -> None:
    """A run's config: the recipe ``cfg`` on the split folder ``<data>/split<N>`` (its annotations.json and
    features/, as in ../shared/data/gtea-tcn) with ``seed``."""
    cfg = json.loads(json.dumps(cfg))
    cfg["dataset"]["annotation_file"] = str(split_dir / "annotations.json")
    cfg["dataset"]["feat_dir"] = str(split_dir / "features")
    cfg["train"]["seed"] = seed
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def data_and_split(annotation_file: str | Path) -> tuple[str, int | None]:
    """The data set's name and split number of a config's annotation file in write_config's layout
    (``<data>/split<N>/annotations.json``); elsewhere the file's folder name and None."""
    folder = Path(annotation_file).resolve().parent
    number = folder.name.removeprefix("split")
    return (folder.parent.name, int(number)) if number.isdigit() else (folder.name, None)


RESULT = "bench_result.json"  # a finished run's scores, in its run folder


def run_one(cltdr: str, run: Path, config: Path, log: Path) -> dict:
    """Train (or finish training) and test one run; returns {'ema': avg mAP, 'raw': ..., 'train_s': ...} (no
    'train_s' for a run resumed from its folder)."""
    result = run / RESULT
    if result.is_file():
        return json.loads(result.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as out:
        start = time.perf_counter()
        cmd = [cltdr, "train", str(config), "--out", str(run), "--quiet"]
        resumed = (run / "config.yaml").is_file()
        if resumed:
            cmd.append("--resume")
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, env=env)
        # A resumed run's time is that of its last epochs only: no training time then.
        scores: dict = {} if resumed else {"train_s": time.perf_counter() - start}
        for weights in ("ema", "raw"):
            dest = run / f"test-{weights}"
            subprocess.run(
                [cltdr, "test", str(run), "--quiet", "--weights", weights, "--out", str(dest)],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            metrics = json.loads((dest / "metrics.json").read_text())
            scores[weights] = metrics["average_mAP"]
            scores[f"{weights}_mAP"] = metrics["mAP"]
            scores[f"{weights}_class_ap"] = class_ap(metrics)
    atomic_write_json(result, scores, indent=1)
    return scores


def class_ap(metrics: dict) -> dict[str, float]:
    """Each class's AP averaged over the tIoU thresholds, from ``cltdr test``'s metrics.json."""
    return {name: statistics.mean(by_tiou.values()) for name, by_tiou in metrics["per_class_ap"].items()}


# Classes with fewer test actions than this are left out of the "frequent classes" figure: a class with one test
# action has an AP of 0, 1/k or 1 (GTEA has two such classes a split, with 3 training actions each), so it moves
# a run's mAP by up to 1/K alone, more than any variant does.
FREQUENT = 5


def frequent_classes(split_dir: Path, subset: str) -> list[str]:
    """The classes with at least FREQUENT actions in ``subset`` of the split's annotations.json; none when the
    file is absent (``--table-only`` needs only the record)."""
    from cltdr.data.annotations import load_annotations
    from cltdr.errors import DataError

    path = split_dir / "annotations.json"
    if not path.is_file():
        return []
    try:
        annotations = load_annotations(path, subsets=[subset], default_fps=RECIPE["dataset"]["default_fps"])
    except DataError as e:
        fail(str(e))
    counts = collections.Counter(int(label) for v in annotations.videos for label in v.labels)
    return [name for i, name in enumerate(annotations.class_names) if counts[i] >= FREQUENT]


def frequent_map(run: dict, weights: str, classes: list[str]) -> float | None:
    """The mean AP of ``classes`` of a run's ``weights``, or None when the run recorded no per-class AP."""
    aps = run.get(f"{weights}_class_ap")
    return statistics.mean(aps[c] for c in classes) if aps and classes else None


def fail(message: str) -> NoReturn:
    """Bad input: its message, naming the file and line, and exit status 2."""
    print(f"real_data: {message}", file=sys.stderr)
    raise SystemExit(2)


class Record:
    """The JSON-lines record of finished runs (``--record``): scores by (data, split, seed, config), so a run is
    trained once whatever the run folder. After each new run the file is read again and rewritten whole,
    atomically, under a lock on its folder, so several processes (lanes) can add to one record."""

    def __init__(self, path: Path | None):
        self.path, self.lock = path, threading.Lock()
        self.load()

    def load(self) -> None:
        """(Re)read the file: its entries and their index by key."""
        self.entries: list[dict] = []
        if self.path is not None and self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        self.entries.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        fail(f"{self.path}:{n}: not a JSON line ({e})")
        self.scores = {self.key(e["data"], e["split"], e["seed"], e["config"]): e["scores"] for e in self.entries}

    @staticmethod
    def key(data: str, split: int, seed: int, cfg: dict) -> tuple:
        return data, split, seed, json.dumps(cfg, sort_keys=True)

    def find(self, data: str, split: int, seed: int, cfg: dict) -> dict | None:
        return self.scores.get(self.key(data, split, seed, cfg))

    def add(self, data: str, variant: str, split: int, seed: int, cfg: dict, scores: dict) -> None:
        """Add a finished run, unless the record (as now on disk) holds it already: the first one stays."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = self.key(data, split, seed, cfg)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            with self.lock:
                fcntl.flock(folder, fcntl.LOCK_EX)  # other processes writing the same record wait here
                # another process may have added runs since this one read the file: start from the file's runs
                self.load()
                if key in self.scores:
                    return
                self.scores[key] = scores
                self.entries.append(
                    {
                        "data": data,
                        "variant": variant,
                        "split": split,
                        "seed": seed,
                        "config": cfg,
                        "scores": scores,
                        "commit": commit(),
                        "machine": machine(str(cfg["train"].get("device", "cpu"))),
                        "date": date.today().isoformat(),
                    }
                )
                atomic_write_text(self.path, "".join(json.dumps(e) + "\n" for e in self.entries))
        finally:
            os.close(folder)  # closing the descriptor releases the lock


def commit() -> str | None:
    """The code's git commit (with '+' when tracked files have changed), or None outside a checkout."""
    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        # changes to the record itself do not count: the code is what the commit names
        status = [*git, "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)bench/results"]
        dirty = subprocess.run(status, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def machine(device: str = "cpu") -> str:
    """Where a run on ``device`` trains: the processor's model, the cores and torch's version. One config and seed
    give the same scores on one CPU model (CPU training is deterministic) but not on another one, nor on a GPU: a
    run of another machine is another draw of the seed noise."""
    return f"{processor_name(device)}, {os.cpu_count()} cores, torch {torch.__version__}"


def table(
    results: dict, variants: list[str], splits: list[int], seeds: list[int], frequent: dict[int, list[str]]
) -> str:
    """Markdown: per variant and weights, each split's mean +- std over seeds and the mean over splits; the same
    two figures on each split's ``frequent`` classes, for the runs that recorded their classes' AP."""

    def fmt(values: list[float]) -> str:
        if not values:
            return "-"
        mean = 100 * statistics.mean(values)
        return f"{mean:.1f}" + (f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else "")

    def mean_and_std(by_split: list[list[float]]) -> str:
        """The mean over splits of the seeds' mean, and the mean over splits of the seeds' std."""
        means = [statistics.mean(v) for v in by_split if v]
        stds = [statistics.stdev(v) for v in by_split if len(v) > 1]
        return " | ".join(f"{100 * statistics.mean(x):.1f}" if x else "-" for x in (means, stds))

    head = (
        "| variant | weights | "
        + " | ".join(f"split {s}" for s in splits)
        + " | mean of splits | seed std (mean) | mAP at the lowest / highest tIoU (mean of runs) | train s"
        + f" | classes with {FREQUENT}+ test actions: mean | their seed std |"
    )
    lines = [head, "|" + "---|" * (len(splits) + 8)]
    for v in variants:
        for w in ("ema", "raw"):
            cells, by_split, by_split_frequent, times, ends = [], [], [], [], []
            for s in splits:
                # a recorded run may lack some figures (raw weights, per-tIoU mAP, time): each cell takes those it has
                runs = [results[(v, s, k)] for k in seeds if w in results.get((v, s, k), {})]
                vals = [r[w] for r in runs]
                times += [r["train_s"] for r in runs if "train_s" in r]
                # where a variant wins: finding the actions (low tIoU) or placing their boundaries (high)
                maps = [r[f"{w}_mAP"] for r in runs if f"{w}_mAP" in r]
                ends += [(m[min(m, key=float)], m[max(m, key=float)]) for m in maps]
                cells.append(fmt(vals))
                by_split.append(vals)
                by_split_frequent.append([x for r in runs if (x := frequent_map(r, w, frequent[s])) is not None])
            t = f"{statistics.mean(times):.0f}" if times else "-"
            low_high = " / ".join(f"{100 * statistics.mean(e):.1f}" for e in zip(*ends)) if ends else "-"
            lines.append(
                f"| {v} | {w} | "
                + " | ".join(cells)
                + f" | {mean_and_std(by_split)} | {low_high} | {t} | {mean_and_std(by_split_frequent)} |"
            )
    return "\n".join(lines)


def paired(
    results: dict,
    variants: list[str],
    splits: list[int],
    seeds: list[int],
    frequent: dict[int, list[str]],
    weights: dict[str, str] | None = None,
) -> str:
    """Each variant against the first on the (split, seed) runs both have: the mean difference, its std and
    t = mean / (std / sqrt(n)); |t| under about 2 is within the runs' noise. The same on each split's
    ``frequent`` classes, for the pairs that recorded their classes' AP. The first variant's EMA is compared
    with each variant's ``weights`` (EMA unless named there)."""

    def summary(diffs: list[float]) -> str:
        """'N paired runs): mean ± std points, t = ...', the tail of a parenthesis the caller opens."""
        mean, std = statistics.mean(diffs), statistics.stdev(diffs)
        t = mean / (std / math.sqrt(len(diffs))) if std > 0 else math.inf
        return f"{len(diffs)} paired runs): {mean:+.1f} ± {std:.1f} points, t = {t:.1f}"

    lines = []
    base = variants[0]
    for v in variants[1:]:
        w = (weights or {}).get(v, "ema")
        pairs = [(s, results.get((base, s, k), {}), results.get((v, s, k), {})) for s in splits for k in seeds]
        diffs = [100 * (b[w] - a["ema"]) for _, a, b in pairs if "ema" in a and w in b]
        if len(diffs) < 2:
            continue
        which = "EMA" if w == "ema" else f"{w} against EMA"
        line = f"{v} - {base} ({which}, {summary(diffs)}"
        on_frequent = [(frequent_map(a, "ema", frequent[s]), frequent_map(b, w, frequent[s])) for s, a, b in pairs]
        frequent_diffs = [100 * (y - x) for x, y in on_frequent if x is not None and y is not None]
        if len(frequent_diffs) > 1:
            line += f"; on the classes with {FREQUENT}+ test actions ({summary(frequent_diffs)}"
        lines.append(line)
    return "\n".join(lines)


def competitor_runs(path: Path, data: str, splits: list[int], seeds: list[int]) -> dict:
    """The competitors' runs of bench/compare_training.py's record ``path`` on ``data``'s splits and seeds, keyed
    like this script's runs: (f"{system}_code", split, seed) -> scores and time. cltdr's runs there are left out:
    this script's record holds them."""
    if not path.is_file():
        fail(f"{path}: no such record of the competitors' runs (bench/compare_training.py's, one JSON line a run)")
    results = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            if e["system"] == "cltdr" or e["data"] != data or e["split"] not in splits or e["seed"] not in seeds:
                continue
            run = {"train_s": e["seconds"]}
            for w, figures in (e["scores"] or {}).items():  # None: a run timed only (--no-score)
                run[w], run[f"{w}_mAP"] = figures["average"], figures["mAP"]
                if "class_ap" in figures:  # recorded since the frequent-classes figure
                    run[f"{w}_class_ap"] = figures["class_ap"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            fail(f"{path}:{n}: not a run of bench/compare_training.py ({type(err).__name__}: {err})")
        results[(f"{e['system']}_code", e["split"], e["seed"])] = run
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder holding split1 .. splitN")
    p.add_argument("--out", type=Path, required=True, help="folder of the runs (kept; rerun to continue)")
    p.add_argument("--variants", nargs="+", default=["default"], help=f"among {', '.join(VARIANTS)}")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="NAME:KEY=VALUE", help="extra variants: NAME:key=value,key=value"
    )
    p.add_argument(
        "--recipe", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the recipe, for every variant"
    )
    p.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3, 4])
    p.add_argument("--seeds", nargs="+", type=int, default=[2024, 2025, 2026])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    p.add_argument("--record", type=Path, help="JSON-lines record of finished runs: read, and added to")
    p.add_argument(
        "--table-only", action="store_true", help="table the recorded runs, train none (missing ones are left out)"
    )
    p.add_argument("--competitors", type=Path, help="record of the competitors' trainings (compare_training.py)")
    args = p.parse_args()
    variants = dict(VARIANTS)
    for item in args.set:
        name, _, body = item.partition(":")
        variants[name] = {k: parse_value(v) for k, _, v in (kv.partition("=") for kv in body.split(","))}
        if name not in args.variants:
            args.variants.append(name)
    recipe = {k: parse_value(v) for k, _, v in (kv.partition("=") for kv in args.recipe)}
    unknown = [v for v in args.variants if v not in variants]
    if unknown:
        p.error(f"unknown variants {unknown}; expected among {list(variants)} or --set NAME:...")
    cltdr = str(Path(sys.executable).with_name("cltdr"))
    args.out.mkdir(parents=True, exist_ok=True)
    record, data = Record(args.record), args.data.resolve().name
    jobs = []
    # seeds outermost, variants innermost: an interrupted sweep leaves every variant measured on the same runs
    for k in args.seeds:
        for s in args.splits:
            for v in args.variants:
                run = args.out / v / f"split{s}" / f"seed-{k}"
                run.parent.mkdir(parents=True, exist_ok=True)
                config = run.parent / f"seed-{k}.yaml"
                cfg = settings({**recipe, **variants[v]})
                write_config(config, args.data / f"split{s}", cfg, k)
                jobs.append(((v, s, k), cfg, run, config, run.parent / f"seed-{k}.log"))
    results: dict = {}
    failed: list[str] = []

    def work(job):
        key, cfg, run, config, log = job
        v, s, k = key
        r = record.find(data, s, k, cfg)
        origin = "recorded"
        if r is None and args.table_only:
            print(f"{key}: not recorded, left out", flush=True)
            return key, None
        if r is None:
            origin = "read from its run folder" if (run / RESULT).is_file() else "trained"
            try:
                r = run_one(cltdr, run, config, log)
            except subprocess.CalledProcessError as e:  # the sweep goes on; the run is named at the end
                failed.append(f"{key}: `{' '.join(e.cmd[1:3])}` exited with status {e.returncode}, see {log}")
                print(failed[-1], flush=True)
                return key, None
            record.add(data, v, s, k, cfg, r)
        print(
            f"{key}: {origin}, " + ", ".join(f"{n} {r[n]:.4g}" for n in ("ema", "raw", "train_s") if n in r), flush=True
        )
        return key, r

    with ThreadPoolExecutor(args.jobs) as pool:
        for key, r in pool.map(work, jobs):
            if r is not None:
                results[key] = r
    rows = list(args.variants)
    if args.competitors:
        theirs = competitor_runs(args.competitors, data, args.splits, args.seeds)
        results.update(theirs)
        rows += sorted({v for v, _, _ in theirs})
    subset = RECIPE["dataset"]["test_subset"]
    frequent = {s: frequent_classes(args.data / f"split{s}", subset) for s in args.splits}
    for (v, s, k), r in results.items():
        # the evaluator lists every class with test actions: one missing means other annotations scored the run
        for w in ("ema", "raw"):
            aps = r.get(f"{w}_class_ap")
            if aps is None:  # recorded before runs kept their classes' AP
                continue
            missing = sorted(set(frequent[s]) - set(aps))
            if missing:
                fail(
                    f"run ({v!r}, split {s}, seed {k}): its {w} per-class AP lacks {missing}, classes with test "
                    f"actions in {args.data / f'split{s}' / 'annotations.json'}"
                )
    text = table(results, rows, args.splits, args.seeds, frequent)
    theirs_raw = {v: "raw" for v in rows[len(args.variants) :]}
    text += "\n\n" + paired(results, rows, args.splits, args.seeds, frequent, theirs_raw)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    if failed:
        print(f"{len(failed)} run(s) failed, left out of the table:", *failed, sep="\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
