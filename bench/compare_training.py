"""Whole trainings side by side: ``cltdr train`` against the authors' and TriDet's own ``train.py`` on one dataset.

    python bench/compare_training.py CONFIG [--released PATH] [--tridet PATH] [--set KEY=VALUE ...]
        [--threads 1] [--repeats 1] [--out DIR] [--json FILE] [--record FILE] [--no-score] [--no-cltdr]

CONFIG is a cltdr config (e.g. one made from configs/custom.yaml); ``--set`` overrides its keys as ``cltdr train
--set`` does. Each competitor is a checkout of its repository (github.com/LiQiang0307/CLTDR-GMG,
github.com/dingfengshi/TriDet); cltdr never depends on them. Without one the script says so, prints "skipped" and
exits with status 0. Their Python requirements must be importable (both import pandas and joblib at start-up; the
released code also tensorboard, mmengine and h5py), and their C++ NMS is built from their source with torch's
extension loader (a compiler is needed; about a minute the first time, then cached).

What each system gets, as in the issue that asked for this measurement (issue 17: "their THUMOS14 I3D configs, same
input settings"):

  cltdr      ``python -m cltdr train CONFIG --out DIR --quiet`` with the overrides: nothing else.
  theirs     their THUMOS14 I3D config (released: configs/thumos_i3d_focalloss.yaml, TriDet: configs/thumos_i3d.yaml)
             with the dataset's input settings (features, grid, ``max_seq_len``, number of classes) and the
             recipe's schedule (lr, warm-up and training epochs, batch size, seed) taken from the cltdr config;
             every model, loss and optimiser setting stays theirs. The annotations are written again for them as
             ActivityNet JSON by cltdr's own loader (``label_id`` in cltdr's class order, each video's fps), so
             all systems train on the same videos, segments and labels.

Every run is a fresh process with ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` = ``--threads`` and its own output
folder under ``--out``; the systems run one at a time, never beside each other, in an order that alternates from
repeat to repeat so that drift of the machine hits them alike. Reported: wall seconds of each whole process (start-up,
data loading, training, checkpoints; the released train.py also evaluates the test subset after each epoch of its
second half, as shipped), the optimiser steps it took, seconds per step, and the ratio of each competitor's median
wall time to cltdr's. ``--no-cltdr`` trains the competitors only (e.g. more seeds of theirs, beside cltdr's runs
recorded by bench/real_data.py): no ratio then. TriDet and the released code pad every training batch to
``max_seq_len`` and drop the last incomplete batch of an epoch; cltdr pads a batch to its longest video and keeps the
last batch.

Then every run's final weights are scored on the config's test subset, EMA and raw (the optimiser's, = training
with the EMA off), all by one evaluator: cltdr's (``cltdr evaluate``, average mAP over ``test.tiou_thresholds``)
against the annotation file written for them. cltdr's run is tested with ``cltdr test RUN --weights ema|raw``;
theirs with their own test-time code on their last epoch's checkpoint (bench/their_predictions.py: their dataset,
model, decoding and Soft-NMS). ``--no-score`` skips this.

``--record FILE`` adds every run to a JSON-lines record, one line a run: data set and split (from the config's
annotation file, in bench/real_data.py's layout ``<data>/split<N>/annotations.json``), seed, system, seconds, steps,
ratio, scores, threads, overrides, commit, machine and date. ``bench/results/gtea-tcn-competitors.jsonl`` is the
record of the README's GTEA comparison; ``bench/real_data.py --competitors`` tables it beside cltdr's variants.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from compare_released import RIVALS  # noqa: E402
from real_data import class_ap, commit, data_and_split, machine  # noqa: E402
from released_code import build_nms  # noqa: E402


def skip(message: str, checkout: bool = True) -> None:
    """Say why nothing is compared and exit with status 0; ``checkout``: the problem is a missing or bad checkout."""
    print(f"compare_training: {message}.")
    if checkout:
        print(
            "  expected --released PATH (a checkout of https://github.com/LiQiang0307/CLTDR-GMG) and / or --tridet "
            "PATH (a checkout of https://github.com/dingfengshi/TriDet)"
        )
    print("skipped")
    sys.exit(0)


# ------------------------------------------------------------------------------------------ their inputs
def their_annotations(cfg) -> tuple[dict, int]:
    """The train and test subsets as ActivityNet JSON for their thumos14 dataset class, and the number of classes.

    Read by cltdr's loader, so that segment policy, default fps and class order are cltdr's: their loader takes
    ``label_id`` as the class index and each video's ``fps`` (their ``default_fps`` is left unset)."""
    from cltdr.data.build import class_names, load_split

    names = class_names(cfg)
    database = {}
    # in file order, train subset first: their loader's order, and so their shuffled batches, depend on it
    for subset in dict.fromkeys([cfg.dataset.train_subset, cfg.dataset.test_subset]):
        for rec in load_split(cfg, subset).videos:
            database[rec.video_id] = {
                "subset": subset.lower(),  # their loader compares lower-case subset names
                "duration": rec.duration,
                "fps": rec.fps,
                "annotations": [
                    {"label": names[int(k)], "label_id": int(k), "segment": [float(s), float(e)]}
                    for (s, e), k in zip(rec.segments, rec.labels)
                ],
            }
    return {"database": database}, len(names)


def their_config(template: dict, cfg, annotation_file: Path, num_classes: int, out: Path) -> dict:
    """Their THUMOS14 config ``template`` (their YAML as read) with the dataset's inputs and the recipe's schedule."""
    d, t = cfg.dataset, cfg.train
    theirs = json.loads(json.dumps(template))  # a deep copy
    theirs["train_split"], theirs["val_split"] = [d.train_subset.lower()], [d.test_subset.lower()]
    theirs["dataset"].update(
        json_file=str(annotation_file),
        feat_folder=str(Path(d.feat_dir).resolve()),
        file_prefix=d.feat_prefix or None,
        file_ext=d.feat_ext,
        num_classes=num_classes,
        input_dim=d.input_dim,
        feat_stride=d.feat_stride,
        num_frames=d.num_frames,
        max_seq_len=d.max_seq_len,
    )
    theirs["opt"].update(learning_rate=t.lr, warmup_epochs=t.warmup_epochs, epochs=t.epochs)
    theirs["loader"]["batch_size"] = t.batch_size
    theirs["init_rand_seed"] = t.seed
    theirs["output_folder"] = str(out)
    return theirs


def train_videos(annotations: dict, subset: str) -> int:
    return sum(v["subset"] == subset.lower() for v in annotations["database"].values())


# ------------------------------------------------------------------------------------------------ running
def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> float:
    """Run ``cmd`` to completion, its output into ``log``, each line prefixed by the seconds since the start; wall
    seconds. A failed run ends the script (status 2)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=dict(env, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(f"{time.perf_counter() - start:9.2f} {line}")
        rc = proc.wait()
    seconds = time.perf_counter() - start
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        print(f"compare_training: `{' '.join(cmd)}` (in {cwd}) failed with status {rc}; {log} ends with:\n{tail}")
        sys.exit(2)
    return seconds


def epoch_seconds(log: Path) -> float | None:
    """Seconds inside their training epochs: from each "[Train]: Epoch N started" line of their train.py to its
    "finished" line, summed (what lies outside is start-up, checkpoints and, in the released code, evaluations).
    None for a log without those lines."""
    started, total = None, 0.0
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, text = line.strip().partition(" ")
        if text.startswith("[Train]: Epoch") and text.endswith("started"):
            started = float(stamp)
        elif text.startswith("[Train]: Epoch") and "finished" in text and started is not None:
            total, started = total + float(stamp) - started, None
    return total or None


# ------------------------------------------------------------------------------------------------ scoring
def epoch_checkpoints(folder: Path) -> list[Path]:
    """The epoch checkpoints their train.py wrote into ``folder``, first epoch first (epoch_NNN.pth.tar,
    zero-padded)."""
    return sorted(folder.glob("epoch_*.pth.tar"))


def last_checkpoint(folder: Path) -> Path:
    """The last epoch's checkpoint in ``folder``."""
    found = epoch_checkpoints(folder)
    if not found:
        print(f"compare_training: {folder} holds no epoch_*.pth.tar: their train.py saved no checkpoint")
        sys.exit(2)
    return found[-1]


def prune_checkpoints(folder: Path) -> None:
    """Delete every epoch checkpoint in ``folder`` but the last, the one scored: their train.py keeps one of every
    epoch (5-6 GB a 25-epoch GTEA run of the released code), and a few sessions' runs filled the disk."""
    for path in epoch_checkpoints(folder)[:-1]:
        path.unlink()


def predictions(name: str, run: Path, weights: str, checkout: Path | None, config: Path | None, env: dict) -> Path:
    """The predictions file of ``name``'s run with its ``weights`` ('ema' or 'raw') on the test subset."""
    out = run / f"scored-{weights}"
    if name == "cltdr":
        cmd = [sys.executable, "-m", "cltdr", "test", str(run), "--weights", weights, "--out", str(out), "--quiet"]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "their_predictions.py"), str(checkout), str(config)]
        cmd += [str(last_checkpoint(run)), str(out / "predictions.json"), "--weights", weights]
    timed(cmd, Path.cwd(), env, run.parent / f"{run.name}-score-{weights}.log")
    return out / "predictions.json"


def scores(annotations: dict, files: dict[str, Path], subset: str, tious: list[float]) -> dict[str, dict]:
    """weights -> {"average": average mAP, "mAP": {tIoU: mAP}, "class_ap": {class: AP averaged over the tIoUs}}
    of each predictions file, by cltdr's evaluator."""
    from cltdr.evaluation import evaluate_map
    from cltdr.utils.io import read_json

    figures = {}
    for weights, path in files.items():
        metrics = evaluate_map(annotations, read_json(path, "prediction"), subset.lower(), tious).to_json()
        figures[weights] = {"average": metrics["average_mAP"], "mAP": metrics["mAP"], "class_ap": class_ap(metrics)}
    return figures


def summarise(
    seconds: dict[str, list[float]], logs: dict[str, list[Path]], steps: dict[str, int], scored: dict[str, list[dict]]
) -> tuple[dict, list[str]]:
    """Each system's figures (as --json writes them) and its row of the printed table, from the wall seconds, logs
    and scores of its runs. The time ratio is to cltdr's median, None (printed "-") when cltdr did not run."""
    base = statistics.median(seconds["cltdr"]) if seconds.get("cltdr") else None
    figures, rows = {}, []
    for name, times in seconds.items():
        median = statistics.median(times)
        inside = [epoch_seconds(log) for log in logs[name]]
        in_epochs = statistics.median(inside) if None not in inside else None  # type: ignore[type-var]
        ratio = median / base if base else None
        figures[name] = {
            "seconds": times,
            "epoch_seconds": inside,
            "steps": steps[name],
            "ratio_to_cltdr": ratio,
            "scores": scored[name],
        }
        mean_map = " / ".join(
            f"{100 * statistics.mean(r[w]['average'] for r in scored[name]):.2f}"
            if scored[name] and w in scored[name][0]
            else "-"
            for w in ("ema", "raw")
        )
        rows.append(
            f"{name:10s} {min(times):10.0f} / {median:9.0f} "
            f"{'-' if in_epochs is None else f'{in_epochs:.0f}':>12s} {steps[name]:6d} {median / steps[name]:9.2f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>14s} {mean_map:>19s}"
        )
    return figures, rows


def runs(figures: dict, data: str, split: int | None, seed: int, context: dict) -> list[dict]:
    """One record entry per run of ``figures`` (summarise's), with the data set, split, seed and ``context``."""
    return [
        {
            "data": data,
            "split": split,
            "seed": seed,
            "system": name,
            "seconds": f["seconds"][k],
            "epoch_seconds": f["epoch_seconds"][k],
            "steps": f["steps"],
            "ratio_to_cltdr": f["ratio_to_cltdr"],
            "scores": f["scores"][k] if f["scores"] else None,
            **context,
        }
        for name, f in figures.items()
        for k in range(len(f["seconds"]))
    ]


def record(path: Path, entries: list[dict]) -> None:
    """Append ``entries`` to the JSON-lines record ``path``, whole lines under a lock on the file, so that
    comparisons running beside each other can share one record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        f.write("".join(json.dumps(e) + "\n" for e in entries))
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    p.add_argument("config", type=Path, help="a cltdr config")
    p.add_argument("--released", type=Path, default=None, help="a checkout of LiQiang0307/CLTDR-GMG")
    p.add_argument("--tridet", type=Path, default=None, help="a checkout of dingfengshi/TriDet")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides of the cltdr config")
    p.add_argument("--threads", type=int, default=1, help="OMP / MKL threads of every run (default 1)")
    p.add_argument("--repeats", type=int, default=1, help="whole trainings per system (default 1)")
    p.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    p.add_argument("--record", type=Path, default=None, help="add every run to this JSON-lines record")
    p.add_argument("--no-score", action="store_true", help="time the trainings only, score no weights")
    p.add_argument(
        "--no-cltdr",
        action="store_true",
        help="train only the competitors (e.g. more seeds of theirs beside cltdr's recorded runs); no time ratios",
    )
    args = p.parse_args()

    rivals = {}
    for name, path in (("tridet", args.tridet), ("released", args.released)):
        if path is None:
            continue
        problem = RIVALS[name][1](path)
        if problem:
            skip(problem)
        rivals[name] = path.resolve()
    if not rivals:
        skip("no checkout of a competitor given")

    from cltdr.config import load_config
    from cltdr.errors import CltdrError

    try:
        cfg = load_config(args.config, args.set)
        annotations, num_classes = their_annotations(cfg)
    except CltdrError as e:
        print(f"compare_training: {e}")
        sys.exit(2)
    if cfg.dataset.feat_ext != ".npy":
        ext = cfg.dataset.feat_ext
        print(f"compare_training: their loaders read (T, C) .npy features; {args.config} has feat_ext {ext!r}")
        sys.exit(2)
    out = (args.out or Path(tempfile.mkdtemp(prefix="cltdr-compare-training-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    annotation_file = out / "annotations.json"
    annotation_file.write_text(json.dumps(annotations))

    # their libs/utils/nms.py imports the compiled nms_1d_cpu at start-up: build it, put it on their PYTHONPATH
    nms_problem = build_nms(next(iter(rivals.values())))
    if nms_problem:
        skip(nms_problem, checkout=False)
    nms_dir = Path(sys.modules["nms_1d_cpu"].__file__).parent
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    their_env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(nms_dir), env.get("PYTHONPATH")])))

    n = train_videos(annotations, cfg.dataset.train_subset)
    epochs = cfg.train.epochs + cfg.train.warmup_epochs
    steps = {"cltdr": epochs * math.ceil(n / cfg.train.batch_size)}
    commands = {}
    if not args.no_cltdr:
        commands["cltdr"] = lambda k: (
            [sys.executable, "-m", "cltdr", "train", str(args.config.resolve()), "--out", str(out / f"cltdr-{k}")]
            + ["--quiet"]
            + (["--set", *args.set] if args.set else []),
            Path.cwd(),
            env,
        )
    for name, path in rivals.items():
        template = yaml.safe_load((path / RIVALS[name][0]).read_text())
        config_file = out / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump(their_config(template, cfg, annotation_file, num_classes, out)))
        # -p: their progress print calls torch.cuda.synchronize(), which fails without CUDA; print never
        folder = ["--save_ckpt_dir", str(out / "released-{k}")] if name == "released" else ["--output", "{k}"]
        commands[name] = lambda k, c=config_file, f=folder, path=path: (
            [sys.executable, "train.py", str(c), "-p", "1000000000"] + [a.format(k=k) for a in f],
            path,
            their_env,
        )
        steps[name] = epochs * (n // cfg.train.batch_size)  # their loader drops the last incomplete batch

    # each run's folder: cltdr's --out, the released code's --save_ckpt_dir, TriDet's <config stem>_<--output>
    run_dir = {"cltdr": "cltdr-{k}", "released": "released-{k}", "tridet": "tridet_{k}"}
    weights: dict[str, tuple[str, ...]] = {name: ("ema", "raw") for name in commands}
    if "cltdr" in weights and cfg.train.ema_decay is None:
        weights["cltdr"] = ("raw",)

    systems = list(commands)
    seconds: dict[str, list[float]] = {s: [] for s in systems}
    scored: dict[str, list[dict]] = {s: [] for s in systems}
    for k in range(args.repeats):
        for name in systems if k % 2 == 0 else systems[::-1]:
            cmd, cwd, run_env = commands[name](k)
            seconds[name].append(timed(cmd, cwd, run_env, out / f"{name}-{k}.log"))
            line = f"  {name:9s} run {k + 1}: {seconds[name][-1]:7.0f} s"
            run, checkout = out / run_dir[name].format(k=k), rivals.get(name)
            if name != "cltdr":
                prune_checkpoints(run)
            if not args.no_score:
                files = {w: predictions(name, run, w, checkout, out / f"{name}.yaml", run_env) for w in weights[name]}
                scored[name].append(scores(annotations, files, cfg.dataset.test_subset, cfg.test.tiou_thresholds))
                line += ", avg mAP " + " / ".join(f"{w} {100 * f['average']:.2f}" for w, f in scored[name][-1].items())
            print(line, flush=True)

    print(
        f"\n{args.config} ({n} training videos, {epochs} epochs, batch {cfg.train.batch_size}), "
        f"{args.threads} thread(s), {args.repeats} run(s) each; runs in {out}"
    )
    logs = {name: [out / f"{name}-{k}.log" for k in range(args.repeats)] for name in systems}
    figures, rows = summarise(seconds, logs, steps, scored)
    print(
        f"{'system':10s} {'wall s (min / median)':>22s} {'in epochs s':>12s} {'steps':>6s} {'s / step':>9s} "
        f"{'wall vs cltdr':>14s} {'avg mAP, EMA / raw':>19s}"
    )
    print("\n".join(rows))
    print("in epochs: the time inside their train.py's training epochs (cltdr's log has no epoch markers: -)")
    if not args.no_score:
        print(
            f"avg mAP: mean over the runs, on {cfg.dataset.test_subset} at tIoU {cfg.test.tiou_thresholds}, "
            "by cltdr's evaluator; each run's per-tIoU mAP is in --json"
        )
    if args.json:
        args.json.write_text(json.dumps({"config": str(args.config), "set": args.set, "figures": figures}, indent=1))
    if args.record:
        data, split = data_and_split(cfg.dataset.annotation_file)
        context = {
            "threads": args.threads,
            "set": args.set,
            "commit": commit(),
            "machine": machine(),
            "date": date.today().isoformat(),
        }
        record(args.record, runs(figures, data, split, cfg.train.seed, context))


if __name__ == "__main__":
    main()
