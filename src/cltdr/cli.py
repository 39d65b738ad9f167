"""The ``cltdr`` command: synth, train, test, detect, demo; evaluate, diagnose, plot, export (cli_eval.py).

User errors (:class:`~cltdr.errors.CltdrError`) print one clear message and exit with status 2; an interrupted
training run says how to resume it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import CltdrError

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------- commands
def cmd_synth(args) -> None:
    from .data.synth import describe, generate

    info = generate(args.out_dir, preset=args.preset, seed=args.seed)
    _print(f"wrote {info.annotation_path} and {info.feat_dir}/")
    _print(json.dumps(describe(info), indent=2))


def cmd_train(args) -> None:
    from .config import load_config
    from .training.trainer import Trainer

    cfg = load_config(args.config, args.set)
    if args.seeds is not None:
        from .ablate import format_mean_std, train_seeds

        if args.seeds < 1:
            raise CltdrError(f"--seeds {args.seeds}: expected a number of seeds >= 1")
        s = train_seeds(cfg, args.out, args.seeds, resume=args.resume, progress=not args.quiet, echo=_print)
        cells = " | ".join(f"{k}: {format_mean_std(s['mAP'][k], s['mAP_std'][k])}" for k in s["mAP"])
        _print(f"{args.seeds} seeds {s['seeds']}: average mAP {format_mean_std(s['average_mAP'], s['average_mAP_std'])}"
               f" (per seed: {', '.join(f'{100 * v:.2f}' for v in s['per_seed'])})\nmAP (%) at tIoU {cells}")
        _print(f"wrote {args.out / 'seeds.json'}; each seed's run, metrics.json and predictions.json in "
               f"{args.out}/seed-<S>")
        return
    trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.quiet)
    last = trainer.fit()
    _print(f"training done: {last}")


def _write_outputs(out_dir: Path, results: dict, metrics) -> None:
    from .utils.io import atomic_write_json

    atomic_write_json(out_dir / "predictions.json", {"version": "cltdr", "results": results,
                                                     "external_data": {}}, indent=None)
    atomic_write_json(out_dir / "metrics.json", metrics.to_json())


def cmd_test(args) -> None:
    from .inference.runner import evaluate_split
    from .training.trainer import load_trained_model

    cfg, model, device = load_trained_model(args.run_dir, args.checkpoint, args.device, args.weights)
    if args.preset:
        cfg.test.preset = args.preset
    subset = args.subset or cfg.dataset.test_subset
    out = evaluate_split(cfg, model, subset, cfg.dataset.class_names, device, progress=not args.quiet)
    out_dir = Path(args.out or args.run_dir)
    _write_outputs(out_dir, out.results, out.metrics)
    _print(f"subset '{subset}': {len(out.results)} videos")
    _print(out.metrics.format_table())
    _print(f"wrote {out_dir / 'predictions.json'} and {out_dir / 'metrics.json'}")
    if out.fused is not None:  # dataset.fusion: the same detections fused with external class scores
        from .inference.fusion import write_fused

        _print(f"with external class scores ({cfg.dataset.fusion.score_file}):\n{out.fused.metrics.format_table()}")
        _print("wrote " + " and ".join(map(str, write_fused(out_dir, out.fused))))


def cmd_detect(args) -> None:
    import torch

    import dataclasses

    from .data.build import feature_store, pyramid_name
    from .data.features import check_length, load_features
    from .inference.runner import detect, postprocess_options
    from .training.trainer import load_trained_model
    from .utils.io import atomic_write_json

    cfg, model, device = load_trained_model(args.run_dir, args.checkpoint, args.device, args.weights)
    if args.preset:
        cfg.test.preset = args.preset
    fps = args.fps or cfg.dataset.feat_fps or cfg.dataset.default_fps
    if fps is None:
        raise CltdrError("the run's config has no dataset.default_fps: pass --fps (frames per second of the videos)")
    # The run's own preparation (layout, downsampling, resizing), with the stored grid overridable by flags.
    store = dataclasses.replace(feature_store(cfg), feat_stride=args.feat_stride or cfg.dataset.feat_stride,
                                num_frames=args.num_frames or cfg.dataset.num_frames)
    opts = postprocess_options(cfg)
    results = {}
    for path in map(Path, args.features):
        video_id = path.stem
        stored = load_features(path, video_id=video_id, input_dim=cfg.dataset.input_dim, keys=store.keys,
                               layout=store.layout)
        # The stored features span frames [0, (T - 1) * stride + num_frames).
        duration = ((stored.shape[0] - 1) * store.feat_stride + store.num_frames) / fps
        feats, grid = store.prepare(stored, fps)
        check_length(feats.shape[0], model.divisor, pyramid_name(cfg), f"video {video_id!r}: feature file {path}")
        results[video_id] = detect(model, torch.from_numpy(feats).T.contiguous(), grid, duration, opts,
                                   cfg.dataset.class_names, device)[: args.top]
        _print(f"{video_id}: {stored.shape[0]} steps, {duration:.1f} s, {len(results[video_id])} detections")
    atomic_write_json(args.out, {"version": "cltdr", "results": results, "external_data": {}}, indent=None)
    _print(f"wrote {args.out}")


def cmd_demo(args) -> None:
    import time

    import yaml

    from .config import config_from_dict
    from .data.synth import generate
    from .inference.runner import evaluate_split
    from .training.trainer import Trainer, load_trained_model

    out = Path(args.out)
    start = time.time()
    info = generate(out / "data", preset="demo", seed=args.seed)
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["dataset"].update(annotation_file=str(info.annotation_path), feat_dir=str(info.feat_dir),
                           input_dim=info.input_dim, feat_stride=info.feat_stride, num_frames=info.num_frames,
                           train_subset=info.train_subset, test_subset=info.test_subset)
    cfg = config_from_dict(data, str(DEMO_CONFIG))
    _print(f"[demo] synthetic benchmark in {out / 'data'} ({time.time() - start:.0f} s); training CLTDR-GMG")
    run_dir = out / "run"
    Trainer(cfg, run_dir, resume=(run_dir / "checkpoints" / "last.pt").exists(), progress=not args.quiet).fit()
    _print(f"[demo] trained ({time.time() - start:.0f} s); testing on '{info.test_subset}'")
    cfg, model, device = load_trained_model(run_dir)
    result = evaluate_split(cfg, model, cfg.dataset.test_subset, cfg.dataset.class_names, device, progress=False)
    _write_outputs(out, result.results, result.metrics)
    _print(result.metrics.format_table())
    _print(f"[demo] done in {time.time() - start:.0f} s: {out / 'metrics.json'}, {out / 'predictions.json'}")


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cltdr", description="Temporal action localization with CLTDR-GMG.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the embedded synthetic benchmark (annotations + feature files)")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--preset", default="demo", help="tiny | demo | thumos-like")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a model from a YAML config")
    s.add_argument("config", type=Path)
    s.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, logs, config)")
    s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. train.lr=2e-4")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train N seeds (train.seed, +1, ...) into OUT/seed-<S>, test each on the test subset and "
                        "report the mean and standard deviation (OUT/seeds.json)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    for name, helptext in (("test", "evaluate a trained run on its test subset"),
                           ("detect", "detect actions in feature files that have no annotations")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("run_dir", type=Path)
        s.add_argument("--checkpoint", default=None, help="'last', 'best' or a path (default: best if kept, else last)")
        s.add_argument("--device", default="auto")
        s.add_argument("--weights", choices=("ema", "raw"), default="ema",
                       help="the EMA weights (default, when the run kept an EMA) or the optimiser's raw weights")
        s.add_argument("--quiet", action="store_true")
        s.add_argument("--preset", choices=("benchmark", "deployment"), default=None,
                       help="post-processing preset, replacing test.preset (keys the config sets still override)")
    test, detect = sub.choices["test"], sub.choices["detect"]
    test.add_argument("--out", type=Path, default=None, help="output folder (default: the run directory)")
    test.add_argument("--subset", default=None, help="subset to evaluate (default: dataset.test_subset)")
    test.set_defaults(func=cmd_test)
    detect.add_argument("features", nargs="+", help="feature files (T, C); the video id is the file stem")
    detect.add_argument("--out", required=True, type=Path, help="prediction JSON (ActivityNet result format)")
    detect.add_argument("--fps", type=float, default=None, help="frames per second (default: dataset.default_fps)")
    detect.add_argument("--feat-stride", type=float, default=None, help="frames between features (default: config)")
    detect.add_argument("--num-frames", type=float, default=None, help="frames per feature (default: config)")
    detect.add_argument("--top", type=int, default=None, help="keep only the top N detections per video")
    detect.set_defaults(func=cmd_detect)

    s = sub.add_parser("demo", help="synthetic benchmark -> train -> test -> mAP table, in a few minutes on a CPU")
    s.add_argument("--out", type=Path, default=Path("demo-out"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)

    from .cli_data import add_data_commands

    add_data_commands(sub)  # convert, check

    from .cli_eval import add_eval_commands

    add_eval_commands(sub)  # evaluate, diagnose, plot, export

    from .cli_ablate import add_ablate_parser

    add_ablate_parser(sub)  # ablate
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CltdrError as e:
        print(f"cltdr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `cltdr synth ... | head`: the reader went away, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        hint = f"; continue with `cltdr train ... --out {args.out} --resume`" if args.command == "train" else ""
        print(f"cltdr {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
