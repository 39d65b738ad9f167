"""Speed of the evaluation suite on an ActivityNet-sized case, against the slow per-prediction reference.

200,000 predictions over 5,000 videos and 200 classes, tIoU 0.5:0.05:0.95. Prints the time of the vectorised
mAP (with recall at k x G), of the literal reference (tests/eval_reference.py), their largest difference (must
be below 1e-9), and the times of AR@AN and of the DETAD-style diagnosis on the same files.

    python bench/bench_eval.py [--videos 5000] [--classes 200] [--predictions 200000] [--skip-reference]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cltdr.evaluation import GroundTruth, Predictions, evaluate_map  # noqa: E402
from cltdr.evaluation.diagnosis import diagnose  # noqa: E402
from cltdr.evaluation.proposals import average_recall  # noqa: E402
from eval_reference import Reference, gt_rows, pred_rows  # noqa: E402

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def make_case(videos: int, classes: int, predictions: int, seed: int = 0) -> tuple[dict, dict]:
    """ActivityNet-like: 1-4 actions per video (one class per video), predictions jittered around them plus
    background ones, scores rounded to 3 decimals so that ties occur."""
    rng = np.random.default_rng(seed)
    names = [f"class{k:03d}" for k in range(classes)]
    database, results = {}, {}
    per_video = predictions // videos
    for i in range(videos):
        duration = float(rng.uniform(30, 240))
        label = names[int(rng.integers(classes))]
        anns = []
        for _ in range(int(rng.integers(1, 5))):
            length = float(rng.uniform(2, duration / 3))
            start = float(rng.uniform(0, duration - length))
            anns.append({"label": label, "segment": [start, start + length]})
        video = f"v_{i:05d}"
        database[video] = {"subset": "validation", "duration": duration, "annotations": anns}
        dets = []
        for j in range(per_video):
            if j < 3 * len(anns):
                s, e = anns[j % len(anns)]["segment"]
                jitter = rng.normal(0, 0.15 * (e - s), 2)
                start, end = sorted((s + jitter[0], e + jitter[1]))
                lab = label if rng.random() < 0.8 else names[int(rng.integers(classes))]
            else:
                start = float(rng.uniform(0, duration - 1))
                end = start + float(rng.uniform(1, duration - start))
                lab = names[int(rng.integers(classes))] if rng.random() < 0.5 else label
            score = 0.4 + 0.6 * rng.random() if j < 3 * len(anns) else 0.6 * rng.random()
            dets.append({"label": lab, "score": round(float(score), 3), "segment": [start, end]})
        results[video] = dets
    return {"database": database}, {"results": results}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=5000)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--predictions", type=int, default=200_000)
    p.add_argument("--skip-reference", action="store_true", help="time the fast paths only")
    args = p.parse_args()
    gt, pred = make_case(args.videos, args.classes, args.predictions)
    n = sum(len(v) for v in pred["results"].values())
    print(f"{n} predictions, {args.videos} videos, {args.classes} classes, {len(THRESHOLDS)} tIoU thresholds")

    fast, t_fast = timed(lambda: evaluate_map(gt, pred, "validation", THRESHOLDS))
    print(f"mAP + recall@kG, vectorised : {t_fast:8.3f} s   average mAP {100 * fast.average_mAP:.3f}")
    if not args.skip_reference:
        ref, t_ref = timed(lambda: Reference(gt_rows(gt, "validation"), pred_rows(pred), THRESHOLDS))
        ap, t_ap = timed(ref.ap)
        diff = max(
            np.abs(fast.ap - ap).max(),
            max(np.abs(fast.recall[j] - ref.recall_at(k)).max() for j, k in enumerate(fast.recall_budgets)),
        )
        print(f"mAP, per-prediction reference: {t_ref + t_ap:8.3f} s   largest difference {diff:.2e}")
        print(f"speed-up                     : {(t_ref + t_ap) / t_fast:8.1f} x")
        if diff > 1e-9:
            raise SystemExit(f"the vectorised mAP disagrees with the reference by {diff:.2e} (> 1e-9)")
    g = GroundTruth.from_annotations(gt, "validation")
    ar, t_ar = timed(lambda: average_recall(g, Predictions.from_results(pred, g, "bench", False), THRESHOLDS))
    print(f"AR@AN (100 points)           : {t_ar:8.3f} s   AR@100 {100 * ar.at(100):.2f}, AUC {100 * ar.auc:.2f}")
    _, t_diag = timed(lambda: diagnose(gt, pred, "validation", THRESHOLDS, bins="activitynet"))
    print(f"DETAD-style diagnosis        : {t_diag:8.3f} s")


if __name__ == "__main__":
    main()
