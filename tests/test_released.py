"""``model.variant: released`` and ``cltdr import-checkpoint``: numerical parity with the authors' released code.

Three layers of evidence:
- always: the variant's formulas, masking (a video's outputs never depend on its batch), the importer's errors,
  and a committed fixture (tests/fixtures/released_parity.pt, written by bench/make_released_fixture.py from
  their code) that is imported with the CLI and reproduced, per level and after Soft-NMS;
- with a checkout of their repository in ``CLTDR_RELEASED_REPO`` (skipped otherwise): every one of their
  configs at reduced width, their THUMOS14 I3D model at full size, and their training loss and gradients.

Tolerances: probabilities, coarse distances and refinement offsets 1e-5; refined distances 1e-5 plus the fp32
rounding of their segment-form refinement, (t - d * stride) + R, which at a point t is ulp(t) (2.4e-4 grid
steps at t ~ 2300; both sides compute it in the same order); final detections 1e-4 s and 1e-5 in score.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import released_code as rc
from cltdr import cli
from cltdr.config import config_from_dict, load_config
from cltdr.data.grid import FeatureGrid
from cltdr.errors import CheckpointError, ConfigError
from cltdr.inference.postprocess import postprocess_video, select_candidates, to_results
from cltdr.inference.runner import raw_predictions
from cltdr.model import build_detector, count_parameters
from cltdr.model.losses import sigmoid_focal_loss
from cltdr.model.outputs import refine_distances, refined_log_prob
from cltdr.model.released import SpectralFilter, canvas_lengths
from cltdr.model.released.checkpoint import map_state, our_key
from cltdr.runs import load_trained_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "released_parity.pt"
RELEASED_CONFIGS = sorted((ROOT / "configs" / "released").glob("*.yaml"))
ULP = 2.0**-23  # fp32 relative spacing


def _mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def small_cfg(dataset=None, **model):
    released = model.pop("released", {})
    return config_from_dict(
        {
            "dataset": {
                "annotation_file": "a.json",
                "feat_dir": "f",
                "input_dim": 12,
                "max_seq_len": 64,
                **(dataset or {}),
            },
            "model": {
                "variant": "released",
                "embed_dim": 16,
                "num_levels": 4,
                "ffn_dim": 24,
                "head_dim": 16,
                "num_bins": 4,
                "drop_path": 0.0,
                "released": released,
                **model,
            },
        }
    )


# --------------------------------------------------------------------------------------- formulas and masks
def test_canvas_is_the_released_padding():
    lengths = torch.tensor([10, 64, 65, 200])
    assert canvas_lengths(lengths, 64, 32).tolist() == [64, 64, 96, 224]
    # their max_div_factor 32 x 15 (ActivityNet): a short video keeps max_seq_len, a longer one is rounded up
    assert canvas_lengths(lengths, 128, 480).tolist() == [128, 128, 128, 480]
    assert canvas_lengths(lengths, 0, 96).tolist() == [96, 96, 96, 288]  # padding: divisor


def test_spectral_filter_is_the_documented_formula():
    """W = SoftShrink(A2 ReLU(A1 X + b1) + b2) per channel, ReLU / SoftShrink on real and imaginary parts apart."""
    torch.manual_seed(0)
    D, T = 3, 11
    f = SpectralFilter(D, shrink=0.01).double()
    with torch.no_grad():
        for p in f.parameters():
            p.normal_()
    x = torch.randn(1, D, T, dtype=torch.float64)
    X = np.fft.rfft(x[0].numpy(), axis=-1) / math.sqrt(T)
    w1, b1, w2, b2 = (p.detach().numpy() for p in (f.w1, f.b1, f.w2, f.b2))
    a1, a2 = w1[0] + 1j * w1[1], w2[0] + 1j * w2[1]  # (D, 1)
    h = a1 * X + (b1[0] + 1j * b1[1])[:, None]
    h = np.maximum(h.real, 0) + 1j * np.maximum(h.imag, 0)
    w = a2 * h + (b2[0] + 1j * b2[1])[:, None]

    def shrink(v):
        return np.sign(v) * np.maximum(np.abs(v) - 0.01, 0)

    w = shrink(w.real) + 1j * shrink(w.imag)
    ref = np.fft.irfft(w * X, n=T, axis=-1) * math.sqrt(T)
    np.testing.assert_allclose(f(x, None)[0].detach().numpy(), ref, atol=1e-10)
    # per-video canvases: each transformed over its own length
    x2 = torch.cat([x, torch.zeros(1, D, 5, dtype=torch.float64)], -1)
    np.testing.assert_allclose(f(x2, torch.tensor([T]))[0, :, :T].detach().numpy(), ref, atol=1e-10)
    assert (f(x2, torch.tensor([T]))[0, :, T:] == 0).all()


def test_refinement_in_grid_steps_is_segment_form():
    """Released: s' = (t - d_s * stride) + R_so, d_s' = (t - s') / stride, class-wise, clamped at 0."""
    torch.manual_seed(0)
    d = torch.rand(1, 5, 3, 2) * 4
    off = torch.randn(1, 5, 3, 2) * 3
    t = torch.arange(5.0)[None, :, None] * 4
    s = torch.full_like(t, 4.0)
    r = refine_distances(d, off, clamp=True, position=t, stride=s)
    start, end = t - d[..., 0] * s + off[..., 0], t + d[..., 1] * s + off[..., 1]
    torch.testing.assert_close(r, torch.stack([(t - start) / s, (end - t) / s], -1).clamp(min=0))
    # offsets shared by the classes (this project's CLTDR decoder) still broadcast
    shared = refine_distances(d, off[:, :, 0], clamp=False)
    torch.testing.assert_close(shared[..., 0], d[..., 0] - off[:, :, :1, 0])


def test_refined_score_is_the_product_of_the_logits():
    a, r = torch.randn(50), torch.randn(50)
    torch.testing.assert_close(refined_log_prob(a, r, "logit_product").exp(), torch.sigmoid(a * r))
    assert torch.isfinite(refined_log_prob(torch.tensor([30.0]), torch.tensor([-30.0]), "logit_product")).all()


def test_focal_loss_is_the_literal_formula():
    z, q = torch.randn(40), torch.rand(40)
    p = torch.sigmoid(z)
    ce = -(q * torch.log(p) + (1 - q) * torch.log(1 - p))
    p_t = p * q + (1 - p) * (1 - q)
    ref = (0.25 * q + 0.75 * (1 - q)) * (1 - p_t) ** 2 * ce
    torch.testing.assert_close(sigmoid_focal_loss(z, q, 0.25, 2.0), ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "released",
    [{}, {"local_kernel": 3, "abs_position": True, "head_kernel": 5, "boundary_kernel": 1}, {"padding": "divisor"}],
)
def test_outputs_do_not_depend_on_the_batch(released):
    """A short video (canvas max_seq_len) and a long one (canvas its length rounded up), each alone and together
    in a longer-padded batch: the same outputs and the same loss."""
    torch.manual_seed(0)
    model = build_detector(small_cfg(released=dict(released)), 3).eval()
    mult = model.canvas_multiple
    T = 3 * mult + 2 * model.divisor
    n_long, n_short = T - 5, 37
    x = torch.randn(2, 12, T)
    mask = _mask([n_long, n_short], T)
    x = x * mask[:, None]
    batch = model.predict(x, mask)
    for b, n in enumerate((n_long, n_short)):
        alone_len = -(-n // model.divisor) * model.divisor
        alone = model.predict(x[b : b + 1, :, :alone_len], mask[b : b + 1, :alone_len])[0]
        for a, c in zip(alone.scores + alone.segments, batch[b].scores + batch[b].segments):
            torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    model.train()
    segs, labels = [torch.tensor([[3.0, 20.0]])], [torch.tensor([2])]
    losses = []
    for xb, mb in ((x[1:, :, :64], mask[1:, :64]), (x[1:], mask[1:])):
        model.loss_normalizer.fill_(50.0)
        losses.append(model.loss(xb, mb, segs, labels))
    for key in ("cls_loss", "reg_loss"):
        torch.testing.assert_close(losses[0][key], losses[1][key], atol=1e-5, rtol=1e-5)


def test_released_trains_a_step_with_every_parameter():
    torch.manual_seed(0)
    model = build_detector(small_cfg(drop_path=0.1, released={"label_smoothing": 0.1}), 5)
    x = torch.randn(2, 12, 64)
    mask = _mask([64, 50], 64)
    segs = [torch.tensor([[3.0, 20.0], [30.0, 60.0]]), torch.tensor([[10.0, 12.0]])]
    losses = model.loss(x, mask, segs, [torch.tensor([0, 4]), torch.tensor([1])])
    assert losses["num_pos"] > 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient: {unused}"
    # the running positive count, unset (0) at first, took the count itself, then was updated a second time
    # with the same count (the released code updates it before each of its two loss terms)
    assert model.loss_normalizer.item() == pytest.approx(float(losses["num_pos"]))


def test_detached_boundary_towers_do_not_train_the_encoder():
    """The Trident start / end towers read detached features (the released detach_feat); the others do not."""
    model = build_detector(small_cfg(), 3)
    captured = {}
    for name in ("start_head", "cls_head"):
        getattr(model.decoder, name).register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    model(torch.randn(1, 12, 64), torch.ones(1, 64, dtype=torch.bool))
    encoder = list(model.encoder.parameters())
    start = torch.autograd.grad(captured["start_head"].sum(), encoder, allow_unused=True, retain_graph=True)
    cls = torch.autograd.grad(captured["cls_head"].sum(), encoder, allow_unused=True)
    assert all(g is None for g in start) and any(g is not None for g in cls)


def test_released_thumos_config_has_their_parameter_count():
    """21,908,390 in their model, 6 of which (their RefineHead's per-level scales) it never uses."""
    cfg = load_config(ROOT / "configs" / "released" / "thumos14_i3d.yaml")
    with torch.device("meta"):
        model = build_detector(cfg, 20)
    assert count_parameters(model) == 21_908_390 - 6


@pytest.mark.parametrize("path", RELEASED_CONFIGS, ids=lambda p: p.stem)
def test_released_configs_build(path):
    cfg = load_config(path)
    assert cfg.model.variant == "released"
    with torch.device("meta"):
        model = build_detector(cfg, 1 if cfg.dataset.class_agnostic else 20)
    assert count_parameters(model) > 0


@pytest.mark.parametrize(
    "model, key",
    [
        ({"variant": "released", "cltdr": {"refine": "cls"}}, "model.cltdr"),
        ({"variant": "released", "encoder": "sgp"}, "model.encoder"),
        ({"released": {"local_kernel": 3}}, "model.released"),
        ({"variant": "released", "released": {"local_kernel": 4}}, "local_kernel"),
    ],
)
def test_invalid_released_configs_name_the_key(model, key):
    with pytest.raises(ConfigError, match=key):
        config_from_dict({"dataset": {"annotation_file": "a", "feat_dir": "f"}, "model": model})


# ----------------------------------------------------------------------------------------- the importer
def _fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def _state(case: dict) -> dict[str, torch.Tensor]:
    return {k[len("module.") :]: v for k, v in case["checkpoint"]["state_dict_ema"].items()}


def _case_cfg(case: dict, **dataset):
    data = json.loads(json.dumps(case["config"]))  # a copy
    data["dataset"].update({"annotation_file": "a.json", "feat_dir": "f", **dataset})
    return config_from_dict(data)


def test_every_released_tensor_has_one_counterpart():
    case = _fixture()["cases"]["hacs_slowfast"]
    model = build_detector(_case_cfg(case), 3)
    mapped = map_state(_state(case), model, "fixture")
    assert set(mapped) == set(model.state_dict())
    assert our_key("refineHead.scale.0.scale") is None  # built by their RefineHead, never used
    with pytest.raises(KeyError):
        our_key("backbone.stem.0.unknown")


@pytest.mark.parametrize("problem", ["unknown", "missing", "shape"])
def test_importer_names_the_key_that_does_not_fit(problem):
    case = _fixture()["cases"]["thumos_i3d"]
    model = build_detector(_case_cfg(case), 3)
    state = _state(case)
    if problem == "unknown":
        state["backbone.extra.weight"] = torch.zeros(1)
        expected = "backbone.extra.weight"
    elif problem == "missing":
        del state["reg_head.scale.3.scale"]
        expected = "decoder.center_scales.3"
    else:
        state["cls_head.cls_head.conv.bias"] = torch.zeros(7)
        expected = "cls_head.cls_head.conv.bias"
    with pytest.raises(CheckpointError, match=expected.replace(".", r"\.")):
        map_state(state, model, "fixture")


def test_import_checkpoint_errors_exit_with_status_2(tmp_path, capsys):
    case = _fixture()["cases"]["thumos_i3d"]
    ckpt = tmp_path / "theirs.pth.tar"
    state = dict(case["checkpoint"])
    state["state_dict_ema"] = {k: v for k, v in state["state_dict_ema"].items() if "embd.0" not in k}
    torch.save(state, ckpt)
    cfg = tmp_path / "c.yaml"
    data = json.loads(json.dumps(case["config"]))
    data["dataset"].update(annotation_file="a.json", feat_dir="f", class_names=["a", "b", "c"])
    cfg.write_text(yaml.safe_dump(data))
    assert cli.main(["import-checkpoint", str(ckpt), "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "encoder.embed.0.weight" in err and "no tensor for it" in err
    # a paper-variant config is refused before anything is read
    paper = tmp_path / "paper.yaml"
    paper.write_text(yaml.safe_dump({"dataset": {"annotation_file": "a.json", "feat_dir": "f"}}))
    assert cli.main(["import-checkpoint", str(ckpt), "--config", str(paper), "--out", str(tmp_path / "p")]) == 2
    assert "model.variant" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- comparisons
def _ulp_tol(position: torch.Tensor, stride: torch.Tensor, offsets: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """1e-5 plus the fp32 rounding of the segment-form refinement at each point, in strides."""
    magnitude = position.abs() + (dist.abs() * stride) + offsets.abs()
    return 1e-5 + 4 * ULP * magnitude / stride


def compare_levels(model, feats: torch.Tensor, ref: dict) -> dict[str, float]:
    """Per level, over the valid steps: ours against theirs; returns the largest differences."""
    x = feats[None]
    T = -(-x.shape[-1] // model.divisor) * model.divisor
    mask = _mask([x.shape[-1]], T)
    with torch.no_grad():
        out = model(F.pad(x, (0, T - x.shape[-1])), mask)
    pred = raw_predictions(model, feats, torch.device("cpu"))
    split = out.level_sizes
    refined = out.refined_distances[0].split(split)
    coarse = out.distances[0].split(split)
    offsets = out.refine_offsets[0].split(split)
    position, stride = out.points.position.split(split), out.points.stride.split(split)
    worst = {"scores": 0.0, "coarse": 0.0, "offsets": 0.0, "refined": 0.0, "refined_over_tol": 0.0}
    for l, n in enumerate(len(s) for s in ref["scores"]):
        assert pred.scores[l].shape[0] == n
        checks = {
            "scores": (pred.scores[l], ref["scores"][l]),
            "coarse": (coarse[l][:n], ref["coarse"][l]),
            "offsets": (offsets[l][:n], ref["offsets"][l]),
        }
        for name, (a, b) in checks.items():
            diff = (a - b).abs().max().item()
            worst[name] = max(worst[name], diff)
            # 1e-5 of the largest value: coarse distances reach tens of strides, where fp32 rounding of the two
            # systems' different (fused / unfused) LayerNorms alone gives ~1e-5 at one thread
            tol = 1e-5 * max(1.0, b.abs().max().item())
            assert diff <= tol, f"level {l} {name}: max difference {diff:.2e} (tolerance {tol:.2e})"
        diff = (refined[l][:n] - ref["distances"][l]).abs()
        s = stride[l][:n, None, None]
        tol = _ulp_tol(position[l][:n, None, None], s, ref["offsets"][l], ref["distances"][l])
        # plus what the refinement inherits, point by point, from the differences its inputs were allowed above
        # (the fused and unfused LayerNorms round differently, by more on some CPU models than on others)
        tol = tol + (coarse[l][:n] - ref["coarse"][l]).abs() + (offsets[l][:n] - ref["offsets"][l]).abs() / s
        worst["refined"] = max(worst["refined"], diff.max().item())
        worst["refined_over_tol"] = max(worst["refined_over_tol"], (diff / tol).max().item())
        assert (diff <= tol).all(), f"level {l} refined distances: max difference {diff.max():.2e}"
    return worst


def _match(a: dict, b: dict, seg_tol: float, score_tol: float) -> tuple[float, float]:
    """Each row of ``a`` (segments (N, 2), scores, labels) against the nearest row of ``b`` with its label; both
    differences must be within tolerance (near-tied scores may be ordered differently)."""
    if len(a["scores"]) == 0:
        return 0.0, 0.0
    seg_a, seg_b = a["segments"].double(), b["segments"].double()
    cost = (seg_a[:, None] - seg_b[None]).abs().amax(-1) + (
        a["scores"].double()[:, None] - b["scores"].double()[None]
    ).abs()
    cost[a["labels"][:, None] != b["labels"][None]] = math.inf
    j = cost.argmin(1)
    assert len(set(j.tolist())) == len(j), "two rows matched one"
    d_seg = (seg_a - seg_b[j]).abs().max().item()
    d_score = (a["scores"].double() - b["scores"].double()[j]).abs().max().item()
    assert d_seg <= seg_tol and d_score <= score_tol, f"segments {d_seg:.2e}, scores {d_score:.2e}"
    return d_seg, d_score


def _top(det: dict, k: int) -> dict:
    order = det["scores"].argsort(descending=True)[:k]
    return {key: v[order] for key, v in det.items()}


def compare_detections(ours: list[dict], theirs: dict, k: int = 100) -> tuple[float, float]:
    """The best ``k`` detections, segments in seconds: each of our best among all of theirs and each of their
    best among all of ours, segments to 1e-4 s and scores to 1e-5 (so near-tied detections may swap places).
    Their detections that clipping to the video leaves empty are dropped, as cltdr drops them."""
    mine = {
        "segments": torch.tensor([r["segment"] for r in ours], dtype=torch.float64).reshape(-1, 2),
        "scores": torch.tensor([r["score"] for r in ours], dtype=torch.float64),
        "labels": torch.tensor([int(r["label"]) for r in ours], dtype=torch.long),
    }
    keep = theirs["segments"][:, 1] > theirs["segments"][:, 0]
    theirs = {key: (v.long() if key == "labels" else v.double())[keep] for key, v in theirs.items()}
    d1 = _match(_top(mine, k), theirs, 1e-4, 1e-5)
    d2 = _match(_top(theirs, k), mine, 1e-4, 1e-5)
    return max(d1[0], d2[0]), max(d1[1], d2[1])


# ------------------------------------------------------------------------------- the fixture, no repo needed
def _write_dataset(tmp_path: Path, case: dict) -> Path:
    """The fixture's videos as a dataset on disk (annotation JSON, one .npy per video) and its config file."""
    feat_dir = tmp_path / "features"
    feat_dir.mkdir()
    database = {}
    for i, video in enumerate(case["videos"]):
        vid = f"video_{i}"
        np.save(feat_dir / f"{vid}.npy", video["feats"].T.numpy())
        database[vid] = {
            "subset": "test",
            "duration": video["duration"],
            "fps": video["fps"],
            "annotations": [{"label": "c0", "label_id": 0, "segment": [0.5, 0.9 * video["duration"]]}],
        }
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"database": database}))
    data = json.loads(json.dumps(case["config"]))
    data["dataset"].update(
        annotation_file=str(annotations),
        feat_dir=str(feat_dir),
        class_names=["c0", "c1", "c2"],
        train_subset="test",
        test_subset="test",
        feat_fps=case["videos"][0]["fps"],
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return cfg


@pytest.mark.parametrize("name", ["thumos_i3d", "hacs_slowfast"])
def test_fixture_parity_through_the_cli(tmp_path, name):
    """Their checkpoint imported with `cltdr import-checkpoint`, then `cltdr test`: their outputs, per level and
    after Soft-NMS (the fixture was written from their code by bench/make_released_fixture.py)."""
    torch.set_num_threads(1)
    case = _fixture()["cases"][name]
    ckpt = tmp_path / "theirs.pth.tar"
    torch.save(case["checkpoint"], ckpt)
    cfg = _write_dataset(tmp_path, case)
    run = tmp_path / "run"
    assert cli.main(["import-checkpoint", str(ckpt), "--config", str(cfg), "--out", str(run)]) == 0
    _, model, _ = load_trained_model(run, device="cpu")
    for video in case["videos"]:
        compare_levels(model, video["feats"], video["reference"])
    assert cli.main(["test", str(run), "--quiet"]) == 0
    predictions = json.loads((run / "predictions.json").read_text())["results"]
    detect = ["detect", str(run), str(tmp_path / "features" / "video_0.npy"), "--out", str(tmp_path / "d.json")]
    assert cli.main(detect + ["--fps", str(case["videos"][0]["fps"])]) == 0
    detected = json.loads((tmp_path / "d.json").read_text())["results"]["video_0"]
    # the same detections (`detect` clips them to the span of the features, a little shorter than the duration)
    assert [(r["label"], r["score"]) for r in detected] == [(r["label"], r["score"]) for r in predictions["video_0"]]
    for i, video in enumerate(case["videos"]):
        theirs = video["reference"]["detections"]
        assert theirs is not None, "the fixture was written without their NMS"
        mine = [dict(r, label=r["label"][1:]) for r in predictions[f"video_{i}"]]  # 'c2' -> class 2
        compare_detections(mine, theirs)


# ------------------------------------------------------------------------------- against their code itself
REPO, WHY = rc.released_repo()
needs_repo = pytest.mark.skipif(REPO is None, reason=f"their code is not here: {WHY}")


@pytest.fixture(scope="module")
def released():
    assert REPO is not None
    modeling, config, _, _ = rc.import_released(REPO)
    return modeling, config, rc.build_nms(REPO)


def _ours_from_theirs(their_model, their_cfg: dict, K: int):
    data = rc.our_config(their_cfg)
    data["dataset"].update(annotation_file="a.json", feat_dir="f")
    model = build_detector(config_from_dict(data), K)
    state = {k[len("module.") :]: v for k, v in rc.their_checkpoint(their_model)["state_dict_ema"].items()}
    model.load_state_dict(map_state(state, model, "their model"))
    return model.eval(), config_from_dict(data)


def _run_both(released, their_cfg: dict, K: int, lengths, seed: int = 0) -> dict[str, float]:
    modeling, _, nms_problem = released
    their = rc.build_their_model(modeling, their_cfg, seed)
    rc.randomize(their, seed)
    model, cfg = _ours_from_theirs(their, their_cfg, K)
    d = their_cfg["dataset"]
    fps = float(d["default_fps"] or 30.0)
    g = torch.Generator().manual_seed(seed + 1)
    worst: dict[str, float] = {}
    opts = cfg.test.postprocess()  # their score voting (ActivityNet) weighs voters by score: voting_weight 'score'
    for n in lengths:
        feats = torch.randn(d["input_dim"], n, generator=g)
        duration = (n * d["feat_stride"] + d["num_frames"]) / fps
        ref = rc.their_outputs(their, rc.video_item(feats, fps, d["feat_stride"], d["num_frames"], duration), True)
        for key, v in compare_levels(model, feats, ref).items():
            worst[key] = max(worst.get(key, 0.0), v)
        pred = raw_predictions(model, feats, torch.device("cpu"))
        cand = select_candidates(pred.scores, pred.segments, opts)
        mine = {"segments": cand.segments, "scores": cand.scores, "labels": cand.labels}
        assert len(cand) == len(ref["candidates"]["scores"])
        tol = 1e-5 + 4 * ULP * float(cand.segments.abs().max())
        worst["candidates"] = max(worst.get("candidates", 0.0), _match(mine, ref["candidates"], tol, 1e-5)[0])
        if nms_problem is None:
            grid = FeatureGrid(fps=fps, feat_stride=d["feat_stride"], num_frames=d["num_frames"])
            results = to_results(
                postprocess_video(pred.scores, pred.segments, opts), grid, duration, list(map(str, range(K)))
            )
            seg, score = compare_detections(results, ref["detections"])
            worst["detections_s"] = max(worst.get("detections_s", 0.0), seg)
            worst["detections_score"] = max(worst.get("detections_score", 0.0), score)
    return worst


@needs_repo
@pytest.mark.parametrize("their", sorted(rc.CONFIGS), ids=lambda n: n.removesuffix(".yaml"))
def test_parity_with_each_released_config_at_reduced_width(released, their):
    _, config, nms_problem = released
    full = rc.their_config(config, REPO, their)
    L = full["model"]["backbone_arch"][2] + 1
    msl = 4 * 2 ** (L - 1)
    K = min(full["dataset"]["num_classes"], 4)
    cfg = rc.their_config(
        config,
        REPO,
        their,
        dataset=dict(input_dim=24, num_classes=K, max_seq_len=msl),
        model=dict(embd_dim=32, fpn_dim=32, head_dim=32, sgp_mlp_dim=48, max_buffer_len_factor=16.0),
    )
    worst = _run_both(released, cfg, K, (msl - 37, msl + 21))
    print(their, {k: f"{v:.1e}" for k, v in worst.items()}, nms_problem or "")
    # the committed config carries their values
    ours = yaml.safe_load((ROOT / "configs" / "released" / rc.CONFIGS[their]).read_text())
    expected = rc.our_config(full)
    for section in ("model", "loss", "train", "test"):
        for key, value in expected[section].items():
            assert ours[section].get(key) == value, f"configs/released/{rc.CONFIGS[their]}: {section}.{key}"
    for key, value in expected["dataset"].items():
        assert ours["dataset"].get(key) == value, f"configs/released/{rc.CONFIGS[their]}: dataset.{key}"


@needs_repo
def test_parity_with_their_full_size_thumos_model(released):
    """Their THUMOS14 I3D model as released (21.9 M parameters), a video of max_seq_len steps and a shorter one
    (computed on the same 2304-step canvas)."""
    torch.set_num_threads(1)
    _, config, _ = released
    cfg = rc.their_config(config, REPO, "thumos_i3d_focalloss.yaml")
    worst = _run_both(released, cfg, 20, (2304, 1000))
    print({k: f"{v:.1e}" for k, v in worst.items()})


@needs_repo
def test_training_loss_and_gradients_match_theirs(released):
    """Their training forward (two videos padded to max_seq_len) and ours: the same losses, positive count and
    gradients (input noise and drop-path off on both sides, the only randomness of a training step)."""
    modeling, config, _ = released
    K = 4
    cfg = rc.their_config(
        config,
        REPO,
        "thumos_i3d_focalloss.yaml",
        dataset=dict(input_dim=24, num_classes=K, max_seq_len=128),
        model=dict(embd_dim=32, fpn_dim=32, head_dim=32, sgp_mlp_dim=48, input_noise=0.0),
    )
    their = rc.build_their_model(modeling, cfg, 0)
    rc.randomize(their, 0)
    model, _ = _ours_from_theirs(their, cfg, K)
    for module in their.modules():
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    for module in model.modules():
        if hasattr(module, "p") and type(module).__name__ == "DropPath":
            module.p = 0.0
    g = torch.Generator().manual_seed(3)
    lengths = (128, 97)
    feats = [torch.randn(24, n, generator=g) for n in lengths]
    segments = [torch.tensor([[5.0, 30.0], [40.0, 44.0], [60.0, 120.0]]), torch.tensor([[10.0, 80.0], [2.0, 9.0]])]
    labels = [torch.tensor([0, 2, 3]), torch.tensor([1, 1])]
    items = []
    for f, s, lab in zip(feats, segments, labels):
        item = rc.video_item(f, 30.0, 4, 16, 20.0)
        item.update(segments=s, labels=lab)
        items.append(item)
    their.train()
    theirs = their(items)
    theirs["final_loss"].backward()
    model.train()
    x = torch.stack([F.pad(f, (0, 128 - f.shape[-1])) for f in feats])
    mine = model.loss(x, _mask(list(lengths), 128), segments, labels)
    mine["loss"].backward()
    for a, b in (("cls_loss", "cls_loss"), ("reg_loss", "reg_loss"), ("loss", "final_loss")):
        torch.testing.assert_close(mine[a], theirs[b].float(), atol=1e-5, rtol=1e-5)
    assert model.loss_normalizer.item() == pytest.approx(their.loss_normalizer, rel=1e-6)
    ours_params = dict(model.named_parameters())
    worst = 0.0
    for key, p in their.named_parameters():
        name = our_key(key)
        if name is None:
            continue
        ours_grad, their_grad = ours_params[name].grad, p.grad
        assert (ours_grad is None) == (their_grad is None), key
        if their_grad is not None:
            torch.testing.assert_close(
                ours_grad.reshape(their_grad.shape), their_grad, atol=1e-5, rtol=1e-4, msg=lambda m: f"{key}: {m}"
            )
            worst = max(worst, (ours_grad.reshape(their_grad.shape) - their_grad).abs().max().item())
    losses = {a: abs(mine[a].item() - theirs[b].item()) for a, b in (("cls_loss", "cls_loss"), ("loss", "final_loss"))}
    print(f"loss differences {losses}, largest gradient difference {worst:.1e}")
