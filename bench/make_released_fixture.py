"""Write tests/fixtures/released_parity.pt: reduced-width models of the authors' released code (github.com/
LiQiang0307/CLTDR-GMG) with random weights, saved in their checkpoint format, their inputs and their outputs.

    python bench/make_released_fixture.py --released PATH [--out tests/fixtures/released_parity.pt]

PATH is a checkout of their repository (or set CLTDR_RELEASED_REPO). Their compiled NMS is built from their C++
source when a compiler is available (tests/released_code.py); without it the fixture holds no final detections.
tests/test_released.py imports each checkpoint with `cltdr import-checkpoint` and checks that cltdr reproduces
these outputs, in CI too, where their code is absent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import released_code as rc  # noqa: E402

WIDTH = dict(embd_dim=16, fpn_dim=16, head_dim=8, sgp_mlp_dim=16)  # GroupNorm(16) needs 16 | D
INPUT_DIM, NUM_CLASSES = 8, 3
# name -> (their config, max_seq_len, video lengths): one video shorter than max_seq_len (computed on a canvas of
# max_seq_len steps), one longer (a canvas of its length rounded up to the padding multiple).
CASES = {
    "thumos_i3d": ("thumos_i3d_focalloss.yaml", 128, (90, 150)),  # L = 6, local kernel 1, no position embedding
    "hacs_slowfast": ("hacs_slowfast_focalloss.yaml", 192, (100, 260)),  # L = 7, kernels 3 / 5 / 1, positions
}
DETECTIONS_KEPT = 150  # of their final detections (the test compares the best 100)


def make_case(modeling, config, path: Path, their: str, max_seq_len: int, lengths, seed: int, nms: bool) -> dict:
    cfg = rc.their_config(
        config,
        path,
        their,
        dataset=dict(input_dim=INPUT_DIM, num_classes=NUM_CLASSES, max_seq_len=max_seq_len),
        model=dict(WIDTH, max_buffer_len_factor=6.0),  # their anet / hacs buffer (1.0) stops at max_seq_len
    )
    model = rc.build_their_model(modeling, cfg, seed)
    rc.randomize(model, seed)
    d = cfg["dataset"]
    fps = float(d["default_fps"] or 30.0)
    g = torch.Generator().manual_seed(seed + 1)
    videos = []
    for n in lengths:
        feats = torch.randn(INPUT_DIM, n, generator=g)
        duration = (n * d["feat_stride"] + d["num_frames"]) / fps
        item = rc.video_item(feats, fps, d["feat_stride"], d["num_frames"], duration)
        ref = rc.their_outputs(model, item, nms=nms)
        del ref["candidates"]  # compared where their code is present; the fixture keeps levels and detections
        if ref["detections"] is not None:
            ref["detections"] = {k: v[:DETECTIONS_KEPT].clone() for k, v in ref["detections"].items()}
        videos.append(
            {
                "feats": feats,
                "fps": fps,
                "duration": duration,
                "feat_stride": d["feat_stride"],
                "num_frames": d["num_frames"],
                "reference": ref,
            }
        )
    checkpoint = rc.their_checkpoint(model)
    del checkpoint["state_dict"]  # the EMA weights are what they evaluate (and all the importer needs)
    return {"their_config": their, "config": rc.our_config(cfg), "checkpoint": checkpoint, "videos": videos}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--released", type=Path, default=None, help=f"their checkout (default: ${rc.ENV})")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "released_parity.pt")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    path = args.released or rc.released_repo()[0]
    problem = rc.checkout_problem(path)
    if problem:
        sys.exit(f"make_released_fixture: {problem}")
    assert path is not None
    torch.set_num_threads(1)
    modeling, config, _, notes = rc.import_released(path)
    nms_problem = rc.build_nms(path)
    for note in notes + ([nms_problem] if nms_problem else []):
        print(f"note: {note}")
    commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    fixture = {
        "format": 1,
        "released_commit": commit.strip() or None,
        "cases": {
            name: make_case(modeling, config, path, their, msl, lengths, args.seed + i, nms_problem is None)
            for i, (name, (their, msl, lengths)) in enumerate(CASES.items())
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out, _use_new_zipfile_serialization=False)  # one pickle: no per-tensor padding
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
