"""The HTML report (``cltdr report``): the data embedded in the page against the evaluation and the slow
per-prediction reference, the page's independence from any network, video links, the command and its errors,
and the page itself in headless Chromium (skipped without /usr/bin/chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import headless
from cltdr import cli
from cltdr.errors import CltdrError, DataError
from cltdr.evaluation import evaluate_map
from cltdr.evaluation.diagnosis import diagnose
from cltdr.utils.io import read_json
from cltdr.viz.report import DETECTION_TYPES, link_videos, write_report
from eval_reference import Reference, gt_rows, pred_rows, tiou
from test_cli import run_error, run_ok
from test_eval_cli import assert_png, files  # noqa: F401  (files: a fixture)
from test_eval_metrics import random_case

READY = "document.documentElement.dataset.ready === '1'"


def page_data(path: Path) -> tuple[dict, dict]:
    """The two JSON objects embedded in a report: summary and per-video columns."""
    text = Path(path).read_text(encoding="utf-8")
    found = dict(
        re.findall(r'<script type="application/json" id="report-(summary|videos)">(.*?)</script>', text, flags=re.S)
    )
    return json.loads(found["summary"]), json.loads(found["videos"])


# ------------------------------------------------------------------------------------------------- the data
@pytest.mark.parametrize("seed", range(6))
def test_page_data_agrees_with_the_evaluation_and_the_reference(seed, tmp_path):
    gt, pred = random_case(np.random.default_rng(seed))  # unknown labels, a video outside the subset, ties
    thresholds = ([0.3, 0.5, 0.7], [0.5], [0.3, 0.7])[seed % 3]  # the last: typed at 0.5, not an mAP threshold
    written = write_report(tmp_path / "r.html", gt, pred, "test", thresholds)
    summary, videos = page_data(written.path)

    metrics = evaluate_map(gt, pred, "test", thresholds)
    assert summary["mAP"] == metrics.mAP.tolist() and summary["average_mAP"] == metrics.average_mAP
    assert summary["per_class"]["ap"] == metrics.ap.tolist()
    assert summary["recall_at_kG"] == {f"{k}G": r.tolist() for k, r in zip(metrics.recall_budgets, metrics.recall)}
    assert summary["diagnosis"] == json.loads(json.dumps(diagnose(gt, pred, "test", [0.5]).to_json()))
    assert set(summary["figures"]) == {"false_positives", "sensitivity", "false_negatives"}

    # Every detection of the subset's videos, best first within its video, typed as the reference types it.
    gts = gt_rows(gt, "test")  # (video, start, end, label), file order
    ref = Reference(gts, pred_rows(pred), [0.5])
    assert summary["classes"][: summary["num_gt_classes"]] == ref.classes
    subset_videos = list(gt["database"])
    assert videos["id"] == subset_videos and videos["duration"] == [3000] * len(subset_videos)
    rows, pid = [], 0
    for video, start, end, label, score in pred_rows(pred):
        if label in ref.classes:
            kind = ref.error_type(pid, 0)
            matched = ref.matched[pid][0]
            pid += 1
        else:
            kind, matched = "other_class", -1
        if video not in subset_videos:
            continue
        if matched < 0:  # the ground truth it overlaps most, any class, the first of equal ones
            overlaps = [(tiou((start, end), g[1:3]), -i) for i, g in enumerate(gts) if g[0] == video]
            best, neg = max(overlaps, default=(0.0, 1))
            matched = -neg if best > 0 else -1
        first = next(i for i, g in enumerate(gts) if g[0] == video) if matched >= 0 else 0
        rows.append(
            (
                subset_videos.index(video),
                -score,
                len(rows),
                {
                    "s": round(start * 100),
                    "d": round((end - start) * 100),
                    "c": summary["classes"].index(label),
                    "score": int(np.rint(score * 1000)),
                    "type": DETECTION_TYPES.index(kind),
                    "iou": int(np.floor(100 * tiou((start, end), gts[matched][1:3]))) if matched >= 0 else 0,
                    "ref": matched - first if matched >= 0 else -1,
                },
            )
        )
    rows.sort(key=lambda r: r[:3])
    assert {key: videos["det"][key] for key in rows[0][3]} == {key: [r[3][key] for r in rows] for key in rows[0][3]}
    counts = np.bincount([r[0] for r in rows], minlength=len(subset_videos))
    assert videos["det_off"] == [0, *np.cumsum(counts).tolist()]
    assert summary["counts"]["ignored"] == len(pred["results"]["no_gt"])
    # Each ground truth carries the score of the detection matched to it at 0.5 (-1: missed).
    hit = [-1] * len(gts)
    for p, (_, _, _, _, score) in enumerate(ref.preds):
        if ref.matched[p][0] >= 0:
            hit[ref.matched[p][0]] = int(np.rint(score * 1000))
    assert videos["gt"]["hit"] == hit and videos["gt"]["c"] == [ref.classes.index(g[3]) for g in gts]


def test_page_is_self_contained_and_its_data_cannot_break_out(tmp_path):
    name = "<!--x</script><img src=https://example.com/a.png> Déjà vu"
    gt = {
        "database": {
            name: {"subset": "test", "duration": 10.0, "annotations": [{"label": name, "segment": [1.0, 3.0]}]}
        }
    }
    pred = {"results": {name: [{"label": name, "score": 0.9, "segment": [1.0, 3.2]}]}}
    path = write_report(tmp_path / "r.html", gt, pred, "test", [0.5], title="Résumé <b>").path
    text = path.read_text(encoding="utf-8")
    assert "<title>Résumé &lt;b&gt;</title>" in text
    assert text.count("</script>") == 3  # the two data scripts and the code: none from the data
    # Nothing is fetched: no external script, style, font or image (the figures are data: URIs).
    markup = re.sub(r'<script type="application/json".*?</script>', "", text, flags=re.S)
    assert not re.search(r"<script[^>]+src|<link|@import|url\(|(src|href)=[\"']?(https?:)?//", markup)
    summary, videos = page_data(path)
    assert videos["id"] == [name] and summary["classes"] == [name] and summary["mAP"] == [1.0]


def test_empty_predictions_and_missing_durations(tmp_path):
    gt = {"database": {"v": {"subset": "test", "annotations": [{"label": "a", "segment": [1.0, 3.0]}]}}}
    path = write_report(tmp_path / "r.html", gt, {"results": {}}, "test", [0.5]).path
    summary, videos = page_data(path)
    assert summary["mAP"] == [0.0] and videos["det"]["s"] == [] and videos["gt"]["hit"] == [-1]
    assert summary["diagnosis"] is None and "'duration'" in summary["diagnosis_error"]  # the rest is still there
    assert videos["duration"] == [300]  # no duration: the end of the last segment


def test_link_videos(tmp_path):
    folder, page = tmp_path / "my videos", tmp_path / "out" / "page"
    folder.mkdir()
    page.mkdir(parents=True)
    for name in ("a.mkv", "a.mp4", "v_b.webm", "c.txt", "d.MOV"):
        (folder / name).write_bytes(b"")
    links = link_videos(folder, ["a", "b", "c", "d", "e"], page)
    assert links == {"a": "../../my%20videos/a.mp4", "b": "../../my%20videos/v_b.webm", "d": "../../my%20videos/d.MOV"}
    with pytest.raises(CltdrError, match="not a folder"):
        link_videos(tmp_path / "nope", ["a"], page)


# ---------------------------------------------------------------------------------------------- the command
def test_report_command(files, tiny_data, tmp_path, capsys):  # noqa: F811
    args = ["--gt", files["gt"], "--pred", files["pred"], "--subset", tiny_data.test_subset]
    out = run_ok(capsys, "report", *args, "--out", tmp_path / "r.html")
    metrics = evaluate_map(
        read_json(files["gt"], "gt"), read_json(files["pred"], "p"), tiny_data.test_subset, [0.3, 0.4, 0.5, 0.6, 0.7]
    )
    assert metrics.format_table() in out and f"wrote {tmp_path / 'r.html'}" in out
    summary, _ = page_data(tmp_path / "r.html")
    assert summary["mAP"] == metrics.mAP.tolist() and summary["title"] == "cltdr report: pred.json"
    # ActivityNet's protocol: its columns, DETAD's ten thresholds and bins.
    run_ok(capsys, "report", *args, "--dataset", "anet", "--out", tmp_path / "anet.html")
    summary, _ = page_data(tmp_path / "anet.html")
    assert len(summary["thresholds"]) == 10 and sum(summary["shown"]) == 3
    assert summary["diagnosis"]["bins"] == "activitynet" and len(summary["diagnosis"]["tiou_thresholds"]) == 10


def test_report_command_errors(files, tiny_data, tmp_path, capsys):  # noqa: F811
    gt, pred, subset = files["gt"], files["pred"], tiny_data.test_subset
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": {"v": [')
    entry = tmp_path / "entry.json"
    entry.write_text(json.dumps({"results": {"v": [{"label": "a", "score": "high", "segment": [0, 1]}]}}))
    out = tmp_path / "r.html"
    cases = [
        (
            ["--gt", gt, "--pred", tmp_path / "none.json", "--subset", subset],
            f"prediction file not found: {tmp_path / 'none.json'}",
        ),
        (["--gt", gt, "--pred", bad, "--subset", subset], f"{bad} is not valid JSON"),
        (["--gt", gt, "--pred", entry, "--subset", subset], f"{entry}: video 'v', entry 0: score 'high'"),
        (
            ["--gt", gt, "--pred", pred, "--subset", "nope"],
            f"{gt}: ground truth has no annotated video in subset 'nope'",
        ),
        (["--gt", gt, "--pred", pred, "--subset", subset, "--videos", tmp_path / "novids"], "not a folder"),
        (["--pred", pred], "give a run directory, or --pred, --gt and --subset"),
        ([tmp_path], "is not a cltdr run directory"),
    ]
    for argv, message in cases:
        assert message in run_error(capsys, "report", *argv, "--out", out)
        assert not out.exists()
    msg = run_error(capsys, "report", "--gt", gt, "--pred", pred, "--subset", subset, "--out", tmp_path)
    assert "is a folder" in msg


def test_report_of_a_run_directory(trained_run, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert "has no predictions.json: run `cltdr test" in run_error(capsys, "report", run, "--out", tmp_path / "r.html")
    run_ok(capsys, "test", run, "--quiet")
    out = run_ok(capsys, "report", run, "--out", tmp_path / "r.html")
    summary, videos = page_data(tmp_path / "r.html")
    metrics = json.loads((run / "metrics.json").read_text())
    assert summary["average_mAP"] == pytest.approx(metrics["average_mAP"], abs=1e-12)
    assert summary["subset"] == tiny_data.test_subset and summary["sources"]["run"] == str(run)
    assert len(videos["id"]) == 8 and "wrote" in out


# ------------------------------------------------------------------------------------------------ the page
@pytest.mark.skipif(not headless.available(), reason=f"no {headless.CHROMIUM}: the browser test needs Chromium")
def test_report_in_headless_chromium(files, tiny_data, tmp_path):  # noqa: F811
    gt_obj, pred_obj = read_json(files["gt"], "gt"), read_json(files["pred"], "p")
    metrics = evaluate_map(gt_obj, pred_obj, tiny_data.test_subset, [0.3, 0.4, 0.5, 0.6, 0.7])
    first = files["video"]
    with headless.Browser(1280, 1000) as browser:
        (tmp_path / "videos").mkdir()
        headless.record_webm(browser, tmp_path / "videos" / f"{first}.webm", seconds=2.0)
        path = write_report(
            tmp_path / "page" / "report.html",
            files["gt"],
            files["pred"],
            tiny_data.test_subset,
            video_dir=tmp_path / "videos",
        ).path
        summary, videos = page_data(path)
        page = browser.open(path.as_uri())
        page.wait_for(READY)
        ev = page.evaluate

        # The mAP table shows evaluate_map's numbers; the class table lists the worst class first.
        assert ev("[...document.querySelectorAll('#map-row td')].map(td => td.textContent)") == [
            "mAP (%)",
            *(f"{100 * m:.2f}" for m in metrics.mAP),
            f"{100 * metrics.average_mAP:.2f}",
        ]
        worst_first = sorted(range(len(metrics.class_names)), key=lambda k: (metrics.ap[:, k].mean(), k))
        assert ev("[...document.querySelectorAll('#class-table tbody td.name a')].map(a => a.textContent)") == [
            metrics.class_names[k] for k in worst_first
        ]
        assert ev("document.querySelectorAll('.figures img').length") == 3
        assert ev("[...document.querySelectorAll('.figures img')].every(i => i.complete && i.naturalWidth > 300)")

        # Filtering by class, as a user does it (the select's change event), redraws the timelines.
        def shown() -> dict:
            return {c["video"]: c["detections"] for c in ev("cltdrReport.cards()")}

        det, gt_off, det_off = videos["det"], videos["gt_off"], videos["det_off"]

        def expected(keep_det, keep_gt=lambda i: True) -> dict:
            """video -> detections drawn, for the videos listed: those with something left to show."""
            out = {}
            for v, video in enumerate(videos["id"]):
                n = sum(map(keep_det, range(det_off[v], det_off[v + 1])))
                if n or any(map(keep_gt, range(gt_off[v], gt_off[v + 1]))):
                    out[video] = n
            return out

        canvas = f"document.querySelector('canvas[data-video=\"{first}\"]')"
        before, pixels = shown(), ev(f"{canvas}.toDataURL()")
        assert before == expected(lambda j: True)
        k = summary["classes"].index(metrics.class_names[worst_first[0]])
        ev(
            f"(() => {{ const s = document.getElementById('cls'); s.value = '{k}'; "
            "s.dispatchEvent(new Event('change')); })()"
        )
        only_k = expected(lambda j: det["c"][j] == k, lambda i: videos["gt"]["c"][i] == k)
        assert shown() == only_k != before
        if first in only_k:
            assert ev(f"{canvas}.toDataURL()") != pixels
        assert f"class={summary['classes'][k]}" in ev("decodeURIComponent(location.hash)")
        # By error type and score (the checkbox and the slider), and searching by id.
        ev("cltdrReport.apply({cls: -1})")
        ev(
            "(() => { const b = document.querySelector('#types input[data-type=\"background\"]'); b.checked = false; "
            "b.dispatchEvent(new Event('change')); })()"
        )
        background = DETECTION_TYPES.index("background")
        assert shown() == expected(lambda j: det["type"][j] != background)
        ev(
            "(() => { const s = document.getElementById('score'); s.value = '500'; "
            "s.dispatchEvent(new Event('input')); })()"
        )
        page.wait_for("cltdrReport.state.score === 500")
        assert shown() == expected(lambda j: det["type"][j] != background and det["score"][j] >= 500)
        ev("cltdrReport.apply({types: cltdrReport.state.types.map(() => true), score: 0, q: '00003'})")
        assert ev("cltdrReport.listed()") == [v for v in videos["id"] if "00003" in v]

        # Hovering a detection tells its error type and tIoU; a click on the timeline moves the player there.
        ev(
            f"cltdrReport.apply({{q: '', video: {json.dumps(first)}}}); "
            f"document.querySelector('article[data-video=\"{first}\"]').scrollIntoView()"
        )
        spot = ev(f"cltdrReport.locate({json.dumps(first)}, 'det', 0)")
        page.hover(spot["x"], spot["y"])
        tip = ev("document.getElementById('tip').hidden ? '' : document.getElementById('tip').textContent")
        j = det_off[videos["id"].index(first)]
        kind = DETECTION_TYPES[det["type"][j]].replace("_", " ")
        assert f"score {det['score'][j] / 1000:.3f}" in tip and f"{kind} at tIoU 0.50" in tip
        assert (
            f"tIoU {det['iou'][j] / 100:.2f} with ground truth #{det['ref'][j] + 1}"
            if det["ref"][j] >= 0
            else "overlaps no ground truth"
        ) in tip
        page.wait_for("document.querySelector('video').readyState >= 1", timeout=10)
        cues = page.wait_for(
            "(() => { const t = document.querySelector('video').textTracks[0]; "
            "return t && t.cues && t.cues.length; })()",
            timeout=10,
        )
        assert cues == shown()[first]
        spot = ev(f"cltdrReport.locate({json.dumps(first)}, 'gt', 0)")
        target = min(spot["time"], 1.5)  # inside the 2-second clip
        seconds = videos["duration"][videos["id"].index(first)] / 100
        x = spot["x"] + (target - spot["time"]) * ev(f"({canvas}.clientWidth - 40) / {seconds}")  # px per second
        assert ev(f"document.elementFromPoint({x}, {spot['y']}) === {canvas}")
        page.click(x, spot["y"])
        position = page.wait_for(
            "document.querySelector('video').currentTime > 0 && document.querySelector('video').currentTime", timeout=5
        )
        assert position == pytest.approx(target, abs=0.05)
        assert ev("document.querySelectorAll('.nofile').length") == min(len(videos["id"]), 10) - 1

        page.browser.pump(0.2)
        assert page.errors == []
        shot = page.screenshot(tmp_path / "report.png")
    assert_png(shot, 1000, 800)


def test_demo_writes_the_report(tmp_path, capsys, monkeypatch):
    """``cltdr demo`` on the tiny preset, with its training skipped and a perfect detector as its model."""
    from cltdr.data import synth
    from cltdr.inference import runner
    from cltdr.training import trainer

    seen = {}

    class Untrained:
        def __init__(self, cfg, *args, **kwargs):
            seen["cfg"] = cfg

        def fit(self):
            return None

    def perfect(cfg, model, subset, class_names, device, progress, **kwargs):
        gt = read_json(cfg.dataset.annotation_file, "gt")
        results = {
            v: [{"label": a["label"], "score": 0.9, "segment": a["segment"]} for a in e["annotations"]]
            for v, e in gt["database"].items()
            if e["subset"] == subset
        }
        return runner.SplitResult(results, evaluate_map(gt, {"results": results}, subset, cfg.test.tiou_thresholds))

    generate = synth.generate
    monkeypatch.setattr(synth, "generate", lambda out, preset, seed: generate(out, "tiny", seed))
    monkeypatch.setattr(trainer, "Trainer", Untrained)
    monkeypatch.setattr(runner, "load_trained_model", lambda run_dir, *args: (seen["cfg"], None, "cpu"))
    monkeypatch.setattr(runner, "run_config", lambda run_dir: seen["cfg"])  # no run was written
    monkeypatch.setattr(runner, "evaluate_split", perfect)
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert f"[demo] report (open it in a browser): {tmp_path / 'd' / 'report.html'}" in capsys.readouterr().out
    summary, _ = page_data(tmp_path / "d" / "report.html")
    assert summary["mAP"] == [1.0] * 5 and summary["sources"]["predictions"] == str(tmp_path / "d" / "predictions.json")


def test_write_report_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="tiou_thresholds"):  # a programming error, not a user's
        write_report(tmp_path / "r.html", {"database": {}}, {"results": {}}, "test", [])
    with pytest.raises(DataError, match="^ground truth has no annotated video in subset 'test'"):
        write_report(tmp_path / "r.html", {"database": {}}, {"results": {}}, "test", [0.5])
    assert not (tmp_path / "r.html").exists()
