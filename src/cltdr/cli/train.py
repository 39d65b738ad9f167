"""``cltdr synth`` (the embedded synthetic benchmark), ``cltdr train`` (one run, or several seeds) and
``cltdr demo`` (synthetic benchmark -> train -> test -> mAP table; ``--video``: from synthetic video files)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cltdr.cli.common import echo
from cltdr.errors import CltdrError
from cltdr.utils.distributed import launched

DEMO_CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


def cmd_synth(args) -> None:
    from cltdr.data.synth import describe, generate

    info = generate(args.out_dir, preset=args.preset, seed=args.seed)
    echo(f"wrote {info.annotation_path} and {info.feat_dir}/")
    echo(json.dumps(describe(info), indent=2))
    settings = {"annotation_file": info.annotation_path, "feat_dir": info.feat_dir, "input_dim": info.input_dim}
    echo(
        "train on it with configs/synth.yaml (subsets 'training' and 'testing'):\n  cltdr train "
        f"configs/synth.yaml --out runs/synth --set {' '.join(f'dataset.{k}={v}' for k, v in settings.items())}"
    )


def cmd_train(args) -> None:
    from cltdr.config import load_config
    from cltdr.runs import RunDir
    from cltdr.training.trainer import Trainer

    cfg = load_config(args.config, args.set)
    if args.seeds is None:
        trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.quiet, config_file=args.config)
        last = trainer.fit()
        if not trainer.proc.main:  # torchrun: the first process reports
            return
        run = RunDir(args.out)
        if run.checkpoint() == run.best and trainer.best is not None:
            chosen = (
                f"{run.best} (epoch {trainer.best['epoch']}, the best average mAP on subset "
                f"{cfg.dataset.val_subset!r}: {100 * trainer.best['average_mAP']:.2f})"
            )
        else:
            chosen = f"{last} (the last epoch)"
        echo(f"training done: {last}\n`cltdr test {run.root}` will use {chosen}; --checkpoint last|best chooses")
        return
    from cltdr.ablate import format_mean_std, train_seeds

    if args.seeds < 1:
        raise CltdrError(f"--seeds {args.seeds}: expected a number of seeds >= 1")
    if launched().distributed:
        raise CltdrError("--seeds runs in one process: train each seed with its own torchrun (--set train.seed=S)")
    s = train_seeds(cfg, args.out, args.seeds, resume=args.resume, progress=not args.quiet, echo=echo)
    cells = " | ".join(f"{k}: {format_mean_std(s['mAP'][k], s['mAP_std'][k])}" for k in s["mAP"])
    echo(
        f"{args.seeds} seeds {s['seeds']}: average mAP {format_mean_std(s['average_mAP'], s['average_mAP_std'])}"
        f" (per seed: {', '.join(f'{100 * v:.2f}' for v in s['per_seed'])})\nmAP (%) at tIoU {cells}"
    )
    echo(f"wrote {RunDir(args.out).seeds}; each seed's run, metrics.json and predictions.json in {args.out}/seed-<S>")


def cmd_demo(args) -> None:
    if args.video:
        return demo_video(args)
    import time

    import yaml

    from cltdr.config import config_from_dict
    from cltdr.data.synth import generate
    from cltdr.inference.runner import test_run
    from cltdr.runs import RunDir
    from cltdr.training.trainer import Trainer
    from cltdr.viz.report import write_report

    out = Path(args.out)
    start = time.time()
    info = generate(out / "data", preset="demo", seed=args.seed)
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["dataset"].update(
        annotation_file=str(info.annotation_path),
        feat_dir=str(info.feat_dir),
        input_dim=info.input_dim,
        feat_stride=info.feat_stride,
        num_frames=info.num_frames,
        train_subset=info.train_subset,
        test_subset=info.test_subset,
    )
    cfg = config_from_dict(data, str(DEMO_CONFIG))
    echo(f"[demo] synthetic benchmark in {out / 'data'} ({time.time() - start:.0f} s); training CLTDR-GMG")
    run = RunDir(out / "run")
    Trainer(cfg, run.root, resume=run.trained, progress=not args.quiet).fit()
    echo(f"[demo] trained ({time.time() - start:.0f} s); testing on '{info.test_subset}'")
    tested = test_run(run.root, out_dir=out, progress=False)
    echo(tested.split.metrics.format_table())
    report = write_report(
        out / "report.html",
        info.annotation_path,
        RunDir(out).predictions(),
        info.test_subset,
        cfg.test.tiou_thresholds,
        title="cltdr demo: CLTDR-GMG on the synthetic benchmark",
    )
    echo(f"[demo] report (open it in a browser): {report.path}")
    echo(f"[demo] done in {time.time() - start:.0f} s: {', '.join(map(str, tested.written))}")


def demo_video(args) -> None:
    from cltdr.video_demo import run_video_demo

    demo = run_video_demo(args.out, seed=args.seed, progress=not args.quiet, echo=echo)
    echo(f"[demo] average mAP {100 * demo.average_mAP:.2f} over tIoU 0.3:0.1:0.7; e.g. {demo.subtitles[0]}")
    echo(f"[demo] wrote {', '.join(map(str, demo.written))}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cltdr.data.synth import PRESETS

    s = sub.add_parser("synth", help="write the embedded synthetic benchmark (annotations + feature files)")
    s.add_argument("out_dir", type=Path, help="folder to write: annotations.json, features/, synth_meta.json")
    s.add_argument(
        "--preset", default="demo", choices=list(PRESETS), help="size of the benchmark (default: %(default)s)"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the generator (default: %(default)s)")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a model from a YAML config")
    s.add_argument("config", type=Path, help="YAML config (configs/*.yaml; every key: src/cltdr/config/schema.py)")
    s.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, logs, config)")
    s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. train.lr=2e-4")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="train N seeds (train.seed, +1, ...) into OUT/seed-<S>, test each on the test subset and "
        "report the mean and standard deviation (OUT/seeds.json)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("demo", help="synthetic benchmark -> train -> test -> mAP table, in a few minutes on a CPU")
    s.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="output folder: data/, run/, the metrics, predictions and report (default: %(default)s)",
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic benchmark (default: %(default)s)")
    s.add_argument(
        "--video",
        action="store_true",
        help="start from synthetic video files instead: render -> cltdr extract (tiny3d, random weights) -> "
        "train -> test -> SRT subtitles and a timeline PNG of a test video (needs PyAV: cltdr[video])",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_demo)
