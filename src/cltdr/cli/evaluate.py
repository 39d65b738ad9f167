"""The evaluation commands of ``cltdr``: evaluate, diagnose, plot (timeline, scores, pr), report and export.

Each reads files and writes files (JSON, PNG, CSV, HTML) atomically; user errors raise
:class:`~cltdr.errors.CltdrError`, which :func:`cltdr.cli.main` turns into one message and exit status 2.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cltdr.cli.common import add_run_options, echo
from cltdr.errors import CltdrError


# ------------------------------------------------------------------------------------------------- helpers
def _thresholds(args) -> list[float]:
    from cltdr.config.schema import invalid_tious
    from cltdr.evaluation.protocols import thresholds_for

    bad = invalid_tious(args.tiou or [])
    if bad:
        raise CltdrError(
            f"--tiou: thresholds are tIoU values in (0, 1], as in the config's test.tiou_thresholds; got {bad}"
        )
    return thresholds_for(args.dataset, args.tiou)


def _load_predictions(path: Path, require_label: bool = True) -> dict:
    from cltdr.evaluation.inputs import validate_predictions
    from cltdr.utils.io import read_json

    pred = read_json(path, "prediction")
    validate_predictions(pred, str(path), require_label)
    return pred


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


# ------------------------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> None:
    from cltdr.evaluation import GroundTruth, Predictions, evaluate_map
    from cltdr.evaluation.epic import evaluate_epic
    from cltdr.evaluation.inputs import check_prediction_videos
    from cltdr.evaluation.proposals import average_recall
    from cltdr.evaluation.protocols import PROTOCOLS
    from cltdr.utils.io import atomic_write_json, read_json

    thresholds = _thresholds(args)
    if not args.max_an > 0:
        raise CltdrError(f"--max-an: the largest average number of proposals per video must be > 0, got {args.max_an}")
    columns = PROTOCOLS[args.dataset].reported if args.dataset else None
    gt = read_json(args.gt, "ground-truth")
    if (args.pred_verb or args.pred_noun) and args.dataset != "epic":
        raise CltdrError("--pred-verb and --pred-noun are for EPIC-Kitchens: add --dataset epic")
    if args.pred is None and not (args.dataset == "epic" and (args.pred_verb or args.pred_noun)):
        raise CltdrError("--pred is required (with --dataset epic, --pred-verb / --pred-noun may replace it)")
    pred = _load_predictions(args.pred, require_label=not args.proposals) if args.pred else None
    extra = {  # EPIC-Kitchens: a verb-only and a noun-only detector's predictions
        key: _load_predictions(path) for key, path in (("verbs", args.pred_verb), ("nouns", args.pred_noun)) if path
    }
    for given, path in ((pred, args.pred), (extra.get("verbs"), args.pred_verb), (extra.get("nouns"), args.pred_noun)):
        if given is not None:
            check_prediction_videos(gt, given, args.subset, str(path))
    report: dict = {"subset": args.subset, "dataset": args.dataset, "tiou_thresholds": thresholds}
    if args.dataset == "epic":
        for task, metrics in evaluate_epic(gt, args.subset, thresholds, pred, **extra, source=str(args.pred)).items():
            echo(f"{task}:\n{metrics.format_table(columns)}")
            if args.per_class:
                echo(metrics.format_per_class())
            report[task] = metrics.to_json()
    elif not args.proposals:
        assert pred is not None  # --pred is required outside EPIC (checked above)
        metrics = evaluate_map(gt, pred, args.subset, thresholds)
        echo(metrics.format_table(columns))
        if args.per_class:
            echo(metrics.format_per_class())
        report.update(metrics.to_json())
    if pred is not None:
        arrays = GroundTruth.from_annotations(gt, args.subset)
        proposals = average_recall(
            arrays, Predictions.from_results(pred, arrays, str(args.pred), False), thresholds, args.max_an
        )
        echo(proposals.format_table())
        report["AR@AN"] = proposals.to_json()
    if args.json:
        atomic_write_json(args.json, report)
        echo(f"wrote {args.json}")


# ------------------------------------------------------------------------------------------------ diagnose
def cmd_diagnose(args) -> None:
    from cltdr.evaluation.diagnosis import diagnose
    from cltdr.evaluation.protocols import PROTOCOLS
    from cltdr.utils.io import atomic_write_json, read_json
    from cltdr.viz.diagnosis import plot_false_negatives, plot_false_positives, plot_sensitivity

    if args.tiou:
        thresholds = _thresholds(args)
    else:  # DETAD: 0.5 on THUMOS14, 0.5:0.05:0.95 on ActivityNet
        thresholds = list(PROTOCOLS[args.dataset].thresholds) if args.dataset in ("anet", "hacs") else [0.5]
    if not 0 < args.min_tiou <= min(thresholds):
        raise CltdrError(
            f"--min-tiou {args.min_tiou}: must be above 0 and at most the lowest threshold "
            f"{min(thresholds)} (it separates localization errors from background)"
        )
    bins = args.bins or (PROTOCOLS[args.dataset].bins if args.dataset else "thumos14")
    d = diagnose(
        read_json(args.gt, "ground-truth"), _load_predictions(args.pred), args.subset, thresholds, bins, args.min_tiou
    )
    out = Path(args.out)
    written = [
        atomic_write_json(out / "diagnosis.json", d.to_json()),
        plot_false_positives(d, out / "false_positive_analysis.png"),
        plot_sensitivity(d, out / "sensitivity_analysis.png"),
        plot_false_negatives(d, out / "false_negative_analysis.png"),
    ]
    echo(d.format_summary())
    echo("wrote " + ", ".join(str(p) for p in written))


# ---------------------------------------------------------------------------------------------------- plot
def cmd_plot_timeline(args) -> None:
    from cltdr.utils.io import read_json
    from cltdr.viz.figures import plot_timeline
    from cltdr.viz.points import timeline

    if args.top < 1:
        raise CltdrError(f"--top: the number of detections shown must be >= 1, got {args.top}")
    t = timeline(read_json(args.gt, "ground-truth"), _load_predictions(args.pred), args.subset, args.video, args.top)
    echo(f"{args.video}: {len(t.gt)} ground-truth actions, {len(t.det)} detections shown")
    echo(f"wrote {plot_timeline(t, args.out)}")


def cmd_plot_scores(args) -> None:
    from cltdr.data.build import load_split, make_dataset
    from cltdr.errors import DataError
    from cltdr.inference.runner import raw_predictions
    from cltdr.runs import load_trained_model
    from cltdr.viz.figures import plot_scores
    from cltdr.viz.points import score_tiou_points

    cfg, model, device = load_trained_model(args.run_dir, args.checkpoint, args.device)
    subset = args.subset or cfg.dataset.test_subset
    split = load_split(cfg, subset).only(
        args.video, f"subset {subset!r} of {cfg.dataset.annotation_file} (choose another with --subset)"
    )
    record = split.videos[0]
    if len(record.labels) == 0:
        raise DataError(f"video {args.video!r} has no annotated action: there is no tIoU to plot against")
    sample = make_dataset(cfg, split, training=False)[0]
    assert sample.feats is not None  # a dataset item holds its features
    scores, segments = raw_predictions(model, sample.feats, device)
    seconds = [sample.grid.to_seconds(s.double(), sample.duration).numpy() for s in segments]
    points = score_tiou_points([s.numpy() for s in scores], seconds, record.segments, record.labels)
    for k, i in points.best().items():
        echo(
            f"{split.class_names[k]}: best score {points.score[i]:.3f} at level {points.level[i]}, step "
            f"{points.step[i]}, tIoU {points.tiou[i]:.3f}"
        )
    title = f"{args.video}: every step before NMS"
    echo(f"wrote {plot_scores(points, split.class_names, title, args.out)}")


def cmd_plot_pr(args) -> None:
    from cltdr.evaluation import GroundTruth, Predictions, match
    from cltdr.evaluation.map import map_from_matching
    from cltdr.utils.io import read_json
    from cltdr.viz.figures import plot_pr
    from cltdr.viz.points import class_pr_curve

    gt = read_json(args.gt, "ground-truth")
    arrays = GroundTruth.from_annotations(gt, args.subset)
    matching = match(
        arrays,
        Predictions.from_results(_load_predictions(args.pred), arrays, str(args.pred)),
        _thresholds(args) if args.tiou or args.dataset else [0.5],
    )
    ap = map_from_matching(matching, arrays.class_names).ap  # (M, K)
    wanted = args.classes or arrays.class_names
    unknown = sorted(set(wanted) - set(arrays.class_names))
    if unknown:
        raise CltdrError(
            f"--classes: {unknown} are not classes of subset {args.subset!r}; its classes are {arrays.class_names}"
        )
    out = Path(args.out)
    for k, name in enumerate(arrays.class_names):
        if name in wanted:
            precision, recall = class_pr_curve(matching, k)
            plot_pr(
                precision,
                recall,
                ap[:, k],
                matching.thresholds,
                f"{name} ({matching.num_gt[k]} instances)",
                out / f"pr_{k:03d}_{_safe_name(name)}.png",
            )
    echo(f"wrote {len(wanted)} precision/recall plots to {out}/")


# -------------------------------------------------------------------------------------------------- report
def cmd_report(args) -> None:
    from cltdr.evaluation.protocols import PROTOCOLS, protocol_of
    from cltdr.viz.report import write_report

    gt, pred, subset, sources = args.gt, args.pred, args.subset, {}
    if args.run_dir is not None:  # what `cltdr test RUN` wrote and evaluated, unless a flag replaces it
        from cltdr.runs import RunDir, run_config

        run, cfg = RunDir(args.run_dir), run_config(args.run_dir)
        gt, subset = gt or cfg.dataset.annotation_file, subset or cfg.dataset.test_subset
        args.tiou = args.tiou or (None if args.dataset else cfg.test.tiou_thresholds)
        sources["run"] = str(run.root)
        if pred is None:
            pred = run.predictions()
            if not pred.is_file():
                raise CltdrError(f"{run.root} has no {pred.name}: run `cltdr test {run.root}` first, or give --pred")
            if cfg.dataset.class_agnostic:  # scored against one-class ground truth, as `cltdr test` does
                from cltdr.inference.fusion import evaluation_ground_truth
                from cltdr.utils.io import read_json

                sources["ground_truth"] = f"{gt} (every label replaced by the run's one class)"
                gt = evaluation_ground_truth(cfg, read_json(gt, "ground-truth"))
    elif gt is None or pred is None or subset is None:
        raise CltdrError("give a run directory, or --pred, --gt and --subset")
    thresholds = _thresholds(args)
    # The protocol of these thresholds decides the columns shown and, as for `diagnose`, DETAD's thresholds and bins.
    dataset = args.dataset or protocol_of(thresholds)
    protocol = PROTOCOLS.get(dataset) if dataset else None
    summary = write_report(
        args.out,
        gt,
        pred,
        subset,
        thresholds,
        video_dir=args.videos,
        sources=sources,
        title=args.title or f"cltdr report: {Path(args.run_dir or pred).name}",
        shown_thresholds=protocol.reported if protocol else None,
        diagnosis_thresholds=list(protocol.thresholds) if protocol and dataset in ("anet", "hacs") else [0.5],
        bins=args.bins or (protocol.bins if protocol else "thumos14"),
    )
    echo(summary.metrics.format_table(protocol.reported if protocol else None))
    linked = f", {summary.linked} with a video file" if args.videos else ""
    ignored = f" ({summary.ignored} predictions of videos outside the subset left out)" if summary.ignored else ""
    echo(
        f"wrote {summary.path} ({summary.size_bytes / 1e6:.1f} MB): {summary.videos} videos{linked}, "
        f"{summary.detections} detections{ignored}"
    )


# -------------------------------------------------------------------------------------------------- export
def cmd_export(args) -> None:
    from cltdr.evaluation import GroundTruth
    from cltdr.evaluation.export import detad_ground_truth, detad_predictions, predictions_csv
    from cltdr.utils.io import atomic_write_json, atomic_write_text, read_json

    pred = _load_predictions(args.pred)
    if args.format == "csv":
        if args.gt or args.gt_out:
            raise CltdrError("--gt / --gt-out are for --format detad")
        echo(f"wrote {atomic_write_text(args.out, predictions_csv(pred, str(args.pred)))}")
        return
    if (args.gt is None) != (args.gt_out is None) or (args.gt is not None and args.subset is None):
        raise CltdrError(
            "--format detad converts the ground truth too when given --gt, --subset and --gt-out "
            "together (or none of them: predictions only)"
        )
    gt = read_json(args.gt, "ground-truth") if args.gt else None
    arrays = GroundTruth.from_annotations(gt, args.subset) if gt is not None else None
    detad, dropped = detad_predictions(pred, arrays, str(args.pred))
    echo(
        f"wrote {atomic_write_json(args.out, detad, indent=None)}"
        + (f" ({dropped} detections of other classes or videos left out)" if dropped else "")
    )
    if gt is not None:
        echo(f"wrote {atomic_write_json(args.gt_out, detad_ground_truth(gt, args.subset), indent=None)}")


# -------------------------------------------------------------------------------------------------- parser
def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register evaluate, diagnose, plot, report and export on the ``cltdr`` sub-command parser ``sub``."""
    from cltdr.evaluation.diagnosis import CHARACTERISTIC_BINS, MIN_TIOU
    from cltdr.evaluation.protocols import PROTOCOLS

    datasets = sorted(PROTOCOLS)

    def files(s: argparse.ArgumentParser, tiou_help: str | None, pred_required: bool = True) -> None:
        s.add_argument("--gt", required=True, type=Path, help="annotation JSON")
        s.add_argument("--pred", required=pred_required, type=Path, help="prediction JSON (ActivityNet result format)")
        s.add_argument("--subset", required=True, help="subset of the annotation file (case-insensitive)")
        if tiou_help:
            s.add_argument("--dataset", choices=datasets, default=None, help="benchmark whose protocol applies")
            s.add_argument("--tiou", type=float, nargs="+", default=None, help=tiou_help)

    s = sub.add_parser("evaluate", help="mAP, per-class AP, recall at kxG and AR@AN of a prediction file")
    files(s, "tIoU thresholds (default: those of --dataset; THUMOS14's 0.3:0.1:0.7 without it)", False)
    s.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    s.add_argument("--per-class", action="store_true", help="print the AP of every class")
    s.add_argument("--proposals", action="store_true", help="class-agnostic proposals: AR@AN only, labels optional")
    s.add_argument("--max-an", type=float, default=100, help="largest average number of proposals per video")
    s.add_argument("--pred-verb", type=Path, default=None, help="EPIC: predictions of a verb-only model")
    s.add_argument("--pred-noun", type=Path, default=None, help="EPIC: predictions of a noun-only model")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("diagnose", help="DETAD-style error diagnosis: JSON and PNG plots in --out")
    files(s, "tIoU thresholds (default 0.5; ActivityNet / HACS: 0.5:0.05:0.95, as DETAD)")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument(
        "--bins",
        choices=sorted(CHARACTERISTIC_BINS),
        default=None,
        help="DETAD bin edges (default: those of --dataset, else thumos14)",
    )
    s.add_argument("--min-tiou", type=float, default=MIN_TIOU, help="below this tIoU a false positive is background")
    s.set_defaults(func=cmd_diagnose)

    plot = sub.add_parser("plot", help="figures: timeline, scores (paper's Figure 5), pr").add_subparsers(
        dest="figure", required=True
    )
    s = plot.add_parser("timeline", help="ground truth against the best detections of one video")
    files(s, None)
    s.add_argument("--video", required=True, help="the video id to plot (a video of --subset)")
    s.add_argument("--top", type=int, default=20, help="detections shown (best first)")
    s.add_argument("--out", required=True, type=Path, help="PNG file")
    s.set_defaults(func=cmd_plot_timeline)
    s = plot.add_parser("scores", help="every step's score against the tIoU of its segment, before NMS")
    add_run_options(s, weights=False)
    s.add_argument("--video", required=True, help="the video id to plot (an annotated video of --subset)")
    s.add_argument("--subset", default=None, help="subset holding the video (default: dataset.test_subset)")
    s.add_argument("--out", required=True, type=Path, help="PNG file")
    s.set_defaults(func=cmd_plot_scores)
    s = plot.add_parser("pr", help="precision/recall curves, one PNG per class")
    files(s, "tIoU thresholds, one curve each (default 0.5)")
    s.add_argument("--classes", nargs="+", default=None, help="only these classes")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.set_defaults(func=cmd_plot_pr)

    s = sub.add_parser("report", help="one self-contained HTML page: mAP, classes, errors, every video's timeline")
    s.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        default=None,
        help="run directory: its predictions.json, annotation file, test subset and thresholds (each replaced by "
        "the flag that names it); without it, --pred, --gt and --subset are required",
    )
    s.add_argument("--pred", type=Path, default=None, help="prediction JSON (ActivityNet result format)")
    s.add_argument("--gt", type=Path, default=None, help="annotation JSON")
    s.add_argument("--subset", default=None, help="subset of the annotation file (case-insensitive)")
    s.add_argument("--dataset", choices=datasets, default=None, help="benchmark whose protocol applies")
    s.add_argument(
        "--tiou",
        type=float,
        nargs="+",
        default=None,
        help="mAP thresholds (default: the run's, else those of --dataset, else THUMOS14's)",
    )
    s.add_argument(
        "--bins",
        choices=sorted(CHARACTERISTIC_BINS),
        default=None,
        help="DETAD bin edges (default: those of the protocol, else thumos14)",
    )
    s.add_argument(
        "--videos",
        type=Path,
        default=None,
        help="folder of the videos (<id>.mp4, .webm, ...): each timeline gets a player, linked relatively",
    )
    s.add_argument("--title", default=None, help="the page's title")
    s.add_argument("--out", required=True, type=Path, help="HTML file")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("export", help="predictions as CSV, or as the input files of the DETAD tool")
    s.add_argument("--pred", required=True, type=Path, help="prediction JSON (ActivityNet result format)")
    s.add_argument(
        "--format",
        required=True,
        choices=("csv", "detad"),
        help="csv: one detection a line (video, label, score, start, end); detad: the DETAD tool's input files",
    )
    s.add_argument("--out", required=True, type=Path, help="output file")
    s.add_argument("--gt", type=Path, default=None, help="detad: annotation JSON to convert as well")
    s.add_argument("--subset", default=None, help="detad: subset of --gt")
    s.add_argument("--gt-out", type=Path, default=None, help="detad: where the converted ground truth goes")
    s.set_defaults(func=cmd_export)
