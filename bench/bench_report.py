"""Size and speed of the HTML report (``cltdr report``) on an ActivityNet-sized case.

5,000 videos, 200 classes, 100 detections per video (500,000), the mAP at tIoU 0.5:0.05:0.95 (the case of
bench_eval.py with more detections). Prints the time to build the page and its size; with Chromium
(/usr/bin/chromium), the time to first render in headless Chromium (navigation start to the summary, the
per-video data read and the first page of timelines drawn), and how long filtering by class, by score and
turning the page take in the page.

    python bench/bench_report.py [--videos 5000] [--classes 200] [--per-video 100] [--out report.html]
        [--screenshot shot.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import headless  # noqa: E402
from bench_eval import make_case  # noqa: E402
from cltdr.viz.report import write_report  # noqa: E402

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=5000)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--per-video", type=int, default=100)
    p.add_argument("--out", type=Path, default=None, help="keep the report here (default: a temporary folder)")
    p.add_argument("--screenshot", type=Path, default=None)
    args = p.parse_args()
    gt, pred = make_case(args.videos, args.classes, args.videos * args.per_video)
    n = sum(len(v) for v in pred["results"].values())
    print(f"{n} detections, {args.videos} videos, {args.classes} classes, {len(THRESHOLDS)} tIoU thresholds")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report.html"
        start = time.perf_counter()
        summary = write_report(
            out,
            gt,
            pred,
            "validation",
            THRESHOLDS,
            diagnosis_thresholds=THRESHOLDS,
            bins="activitynet",
            shown_thresholds=(0.5, 0.75, 0.95),
        )
        print(
            f"built in {time.perf_counter() - start:.1f} s: {summary.size_bytes / 1e6:.1f} MB "
            f"({summary.size_bytes / n:.1f} bytes a detection), average mAP {100 * summary.metrics.average_mAP:.2f}"
        )
        if not headless.available():
            print(f"no {headless.CHROMIUM}: no browser timings")
            return
        with headless.Browser(1280, 900, timeout=120) as browser:
            start = time.perf_counter()
            page = browser.open(out.resolve().as_uri())
            page.wait_for("document.documentElement.dataset.ready === '1'", timeout=120)
            wall = time.perf_counter() - start
            timing = page.evaluate("cltdrReport.timing")
            paint = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
            print(
                f"first render {timing['firstRender']:.0f} ms after navigation start (first contentful paint "
                f"{paint or float('nan'):.0f} ms; summary drawn after {timing['summary']:.0f} ms of script, "
                f"per-video data read in {timing['parse']:.0f} ms); {wall:.1f} s wall clock from the browser's "
                "open command to the first page of timelines"
            )
            for what, change in (
                ("class filter", "{cls: 7, page: 0}"),
                ("score >= 0.5", "{score: 500, page: 0}"),
                ("both off", "{cls: -1, score: 0}"),
                ("page 100", "{page: 99}"),
                ("search 'v_012'", "{q: 'v_012', page: 0}"),
            ):
                ms = page.evaluate(f"cltdrReport.apply({change})")
                print(f"  {what}: {ms:.0f} ms ({len(page.evaluate('cltdrReport.listed()'))} videos listed)")
            if page.errors:
                print("console errors:", page.errors)
            if args.screenshot:
                page.evaluate(
                    "cltdrReport.apply({q: '', page: 0}); document.getElementById('sec-videos').scrollIntoView()"
                )
                print(f"wrote {page.screenshot(args.screenshot)}")


if __name__ == "__main__":
    main()
