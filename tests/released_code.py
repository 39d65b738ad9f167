"""The authors' released CLTDR-GMG code (github.com/LiQiang0307/CLTDR-GMG), run beside cltdr for comparisons:
tests/test_released.py, bench/compare_released.py and bench/make_released_fixture.py.

cltdr never depends on it. A checkout's path comes from the environment variable ``CLTDR_RELEASED_REPO`` (or a
command-line option of the bench scripts); without one, what needs it is skipped. Their model code is imported
as it is; only two things are worked around, both outside their model: their compiled NMS extension
(``nms_1d_cpu``, which a stub stands in for, or a build of their own C++ source made here when a compiler is
available) and their ``libs/utils/__init__.py``, which needs pandas for their evaluation code.

:func:`our_config` translates one of their config files into this project's config (``model.variant:
released``): the one statement of which of their keys is which of ours.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path
from typing import Any

import torch

ENV = "CLTDR_RELEASED_REPO"
RELEASED_CONFIG = "configs/thumos_i3d_focalloss.yaml"
# Files that make a directory a checkout of the released CLTDR-GMG repository (TSCODE.py holds their
# DeCLS / DeReg / CrossLevel modules, which plain TriDet lacks).
RELEASED_FILES = (
    "libs/core/config.py",
    "libs/modeling/__init__.py",
    "libs/modeling/meta_archs.py",
    "libs/modeling/TSCODE.py",
    "libs/utils/nms.py",
    RELEASED_CONFIG,
)
NMS_SOURCE = "libs/utils/csrc/nms_cpu.cpp"

# Their config file -> ours (configs/released/), with the paper's table each reproduces.
CONFIGS = {
    "thumos_i3d_focalloss.yaml": "thumos14_i3d.yaml",
    "thumos_videomae.yaml": "thumos14_videomaev2.yaml",
    "thumos_intervideo_vflloss.yaml": "thumos14_internvideo2.yaml",
    "multithumos_i3d.yaml": "multithumos_i3d.yaml",
    "multithumos_i3d_rgb_only_focalloss.yaml": "multithumos_i3d_rgb.yaml",
    "multithumos_videomae_vflloss.yaml": "multithumos_videomaev2.yaml",
    "epic_slowfast_verb_vflloss.yaml": "epic_verb_slowfast.yaml",
    "epic_slowfast_noun_focalloss.yaml": "epic_noun_slowfast.yaml",
    "anet_tsp.yaml": "anet_tsp.yaml",
    "hacs_i3d_focalloss.yaml": "hacs_i3d.yaml",
    "hacs_slowfast_focalloss.yaml": "hacs_slowfast.yaml",
}


# ----------------------------------------------------------------------------------------------- the checkout
def files_problem(path: Path, files: tuple[str, ...]) -> str | None:
    """Why ``path`` is not a directory holding ``files`` (paths inside it), or None when it is one."""
    if not path.is_dir():
        return f"{path} does not exist or is not a directory"
    missing = [f for f in files if not (path / f).is_file()]
    return f"{path} lacks {', '.join(missing)}" if missing else None


def checkout_problem(path: Path | None) -> str | None:
    """Why ``path`` is not a usable checkout of the released repository, or None when it is."""
    if path is None:
        return f"no checkout of the released code given (set {ENV})"
    problem = files_problem(path, RELEASED_FILES)
    if problem:
        return problem
    text = (path / "libs/modeling/meta_archs.py").read_text(errors="replace")
    if 'register_meta_arch("TriDet")' not in text or "CrossLevel" not in text:
        return f"{path}/libs/modeling/meta_archs.py is not CLTDR-GMG's (no TriDet meta arch using CrossLevel)"
    return None


def released_repo() -> tuple[Path | None, str | None]:
    """The checkout named by ``CLTDR_RELEASED_REPO`` and None, or None and why there is none."""
    value = os.environ.get(ENV)
    path = Path(value) if value else None
    problem = checkout_problem(path)
    return (None, problem) if problem else (path, None)


def import_released(path: Path) -> tuple[types.ModuleType, types.ModuleType, bool, list[str]]:
    """Their ``libs.modeling`` and ``libs.core.config`` from ``path``; whether their NMS extension is real; notes."""
    notes = []
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    try:
        import nms_1d_cpu  # noqa: F401  their compiled extension, present only if they built libs/utils/setup.py

        real_nms = not getattr(nms_1d_cpu, "is_stub", False)
    except ImportError:
        # STUB: their libs/utils/nms.py does `import nms_1d_cpu`, a C++ extension (libs/utils/csrc/nms_cpu.cpp) that
        # is not built here. Only their post-processing (batched_nms) calls it, never their model, so a stand-in
        # module lets their model code import; calling it raises (until build_nms() fills it in).
        stub = types.ModuleType("nms_1d_cpu")

        def missing(*args, **kwargs):
            raise RuntimeError("nms_1d_cpu is a stub (tests/released_code.py): their NMS cannot run")

        stub.nms = stub.softnms = missing
        stub.is_stub = True
        sys.modules["nms_1d_cpu"] = stub
        real_nms = False
        notes.append(
            "their compiled NMS extension nms_1d_cpu is not importable: a stub module stands in for it "
            "(their model never calls it; their end-to-end inference is not measured)"
        )
    with warnings.catch_warnings():
        # their SGPBlock.forward is decorated with torch.cuda.amp.autocast(enabled=False), deprecated in torch 2.4+
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
        try:
            importlib.import_module("libs.utils")
        except ImportError as e:
            # Their libs/utils/__init__.py also imports their evaluation and training helpers (metrics.py needs
            # pandas and joblib); meta_archs.py needs only `batched_nms` from it. Load the package without its
            # __init__ and just the nms module.
            for name in [m for m in sys.modules if m == "libs" or m.startswith("libs.")]:
                del sys.modules[name]
            libs = importlib.import_module("libs")
            pkg = types.ModuleType("libs.utils")
            pkg.__path__ = [str(path / "libs" / "utils")]
            pkg.__package__ = "libs.utils"
            sys.modules["libs.utils"] = pkg
            libs.utils = pkg
            pkg.batched_nms = importlib.import_module("libs.utils.nms").batched_nms
            notes.append(
                f"their libs/utils/__init__.py does not import here ({e}): libs.utils is loaded without "
                "it, with only libs/utils/nms.py (what their model code imports from it)"
            )
        modeling = importlib.import_module("libs.modeling")
        config = importlib.import_module("libs.core.config")
    for mod in (modeling, config):
        if not Path(mod.__file__).resolve().is_relative_to(path.resolve()):
            raise ImportError(f"{mod.__name__} was imported from {mod.__file__}, not from {path}")
    return modeling, config, real_nms, notes


def build_nms(path: Path) -> str | None:
    """Build their C++ NMS (libs/utils/csrc/nms_cpu.cpp) with torch's extension loader into a cache folder and
    put it behind the stub; returns None when it works, else why not. The first build takes about a minute."""
    stub = sys.modules.get("nms_1d_cpu")
    if stub is not None and not getattr(stub, "is_stub", False):
        return None  # their own build is installed
    build = Path(tempfile.gettempdir()) / "cltdr-released-nms"
    build.mkdir(exist_ok=True)
    try:
        from torch.utils.cpp_extension import load

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ext = load(name="nms_1d_cpu", sources=[str(path / NMS_SOURCE)], build_directory=str(build), verbose=False)
    except Exception as e:  # no compiler, no headers, ...
        return f"their NMS could not be built here ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    if stub is None:
        sys.modules["nms_1d_cpu"] = ext
    else:
        stub.nms, stub.softnms, stub.is_stub = ext.nms, ext.softnms, False
    return None


# ------------------------------------------------------------------------------------------------ their config
def their_config(config_module, path: Path, name: str, **changes: dict[str, Any]) -> dict:
    """Their config file ``configs/<name>`` through their loader; ``changes`` update sections (``model``,
    ``dataset``, ``train_cfg``, ``test_cfg``), keeping the copies their loader makes in ``model`` in step."""
    cfg = config_module.load_config(str(path / "configs" / name), defaults=copy.deepcopy(config_module.DEFAULTS))
    for section, values in changes.items():
        cfg[section].update(values)
    for key in ("input_dim", "num_classes", "max_seq_len"):
        cfg["model"][key] = cfg["dataset"][key]
    cfg["model"]["train_cfg"], cfg["model"]["test_cfg"] = cfg["train_cfg"], cfg["test_cfg"]
    return cfg


def build_their_model(modeling, cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
        return modeling.make_meta_arch(cfg["model_name"], **cfg["model"])


def our_config(cfg: dict) -> dict:
    """Their loaded config -> this project's config sections (``model.variant: released``), without the data's
    paths and names (dataset: only the keys the model and its grid depend on)."""
    m, d, tr, te = cfg["model"], cfg["dataset"], cfg["train_cfg"], cfg["test_cfg"]
    fixed = {
        "backbone_type": "SGP",
        "fpn_type": "identity",
        "scale_factor": 2,
        "downsample_type": "max",
        "use_trident_head": True,
        "embd_with_ln": True,
        "fpn_with_ln": True,
        "head_with_ln": True,
    }
    for key, value in fixed.items():
        if m[key] != value:
            raise ValueError(f"their model.{key} is {m[key]!r}; model.variant 'released' builds {value!r}")
    if m["backbone_arch"][0] != 2 or m["fpn_dim"] != m["embd_dim"] or tr["center_sample"] != "radius":
        raise ValueError("their backbone_arch[0], fpn_dim or center_sample differ from what the variant builds")
    if te["nms_method"] != "soft" or te["pre_nms_thresh"] != te["min_score"]:
        raise ValueError("their test_cfg needs Soft-NMS with min_score == pre_nms_thresh")
    win = m["n_sgp_win_size"]
    out: dict[str, Any] = {
        "dataset": {
            "input_dim": d["input_dim"],
            "feat_stride": d["feat_stride"],
            "num_frames": d["num_frames"],
            "max_seq_len": d["max_seq_len"],
            "trunc_thresh": d["trunc_thresh"],
            "crop_ratio": list(d["crop_ratio"]) if d["crop_ratio"] else None,
            "noise_std": m["input_noise"],
            **({"feat_fps": d["default_fps"]} if d["default_fps"] else {}),  # their fps of every video
        },
        "model": {
            "variant": "released",
            "embed_dim": m["embd_dim"],
            "num_levels": m["backbone_arch"][2] + 1,
            "num_full_res_blocks": m["backbone_arch"][1],
            "ffn_dim": m["sgp_mlp_dim"],
            "kernel_size": m["embd_kernel_size"],
            "drop_path": tr["droppath"],
            "head_dim": m["head_dim"],
            "head_layers": m["head_num_layers"],
            "num_bins": m["num_bins"],
            "cls_prior_prob": tr["cls_prior_prob"],
            "regression_range": [list(map(float, r)) for r in m["regression_range"]],
            "center_sample_radius": tr["center_sample_radius"],
            "released": {
                "local_kernel": win if win > 1 else 1,
                "head_kernel": m["head_kernel_size"],
                "boundary_kernel": m["boudary_kernel_size"],
                "abs_position": m["use_abs_pe"],
                "init_conv_std": float(m["init_conv_vars"]),
                "label_smoothing": float(tr["label_smoothing"]),
            },
        },
        "loss": {
            "vfl_alpha": 0.25,
            "vfl_gamma": 2.0,
            "cls_target": "binary",
            "iou_weight_power": float(m["iou_weight_power"]),
            "refined_weight": 0.7,
            "normalizer_init": float(tr["init_loss_norm"]),
        },
        "train": {
            "epochs": cfg["opt"]["epochs"],
            "warmup_epochs": cfg["opt"]["warmup_epochs"],
            "lr": cfg["opt"]["learning_rate"],
            "weight_decay": cfg["opt"]["weight_decay"],
            "batch_size": cfg["loader"]["batch_size"],
            "clip_grad_norm": tr["clip_grad_l2norm"] if tr["clip_grad_l2norm"] > 0 else None,
            "ema_decay": 0.999,
            "ema_warmup": False,  # their EMA's decay is constant
        },
        "test": {
            "score_threshold": te["pre_nms_thresh"],
            "pre_nms_topk": te["pre_nms_topk"],
            "min_segment_length": te["duration_thresh"],
            "nms_sigma": te["nms_sigma"],
            "voting_iou": None if te["multiclass_nms"] else te["voting_thresh"],  # no voting when class-wise
            "max_detections": te["max_seg_num"],
        },
    }
    if out["test"]["voting_iou"] is not None:
        out["test"]["voting_weight"] = "score"  # their voters weigh by score alone
    return out


# ----------------------------------------------------------------------------------------------- running theirs
@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights for a comparison, in place: every tensor N(0, 1 / fan_in) (norm weights and scales around
    1), so that no branch starts at zero as the released initialisation's gates do."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        fan_in = p[0].numel() if p.dim() > 1 else 1
        noise = torch.randn(p.shape, generator=g) * (fan_in**-0.5 if p.dim() > 1 else 0.2)
        parts = name.split(".")
        is_norm = parts[-1] == "weight" and any(k in part for part in parts[-3:-1] for k in ("norm", "ln", "gn"))
        p.copy_(noise + (1.0 if is_norm or parts[-1] == "scale" else 0.0))


def their_checkpoint(model, epoch: int = 1) -> dict:
    """``model``'s weights as their training script saves them (DataParallel's ``module.`` prefix)."""
    state = {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    return {"epoch": epoch, "state_dict": state, "state_dict_ema": {k: v.clone() for k, v in state.items()}}


def video_item(feats: torch.Tensor, fps: float, feat_stride: float, num_frames: float, duration: float) -> dict:
    """One video as their datasets yield it for testing: feats (C, T) and its grid."""
    return {
        "video_id": "video",
        "feats": feats,
        "segments": None,
        "labels": None,
        "fps": fps,
        "duration": duration,
        "feat_stride": feat_stride,
        "feat_num_frames": num_frames,
    }


@torch.no_grad()
def their_outputs(model, item: dict, nms: bool) -> dict[str, Any]:
    """Their model on one video, in eval mode: per level over the valid steps, the refined probabilities
    ``scores`` [(T_l, K)], refined ``distances`` and coarse ``coarse`` [(T_l, K, 2)] in strides (their
    decode_offset / before_refine_decode_offset), the refinement ``offsets`` R_so, R_eo [(T_l, K, 2)] in grid
    steps, the pre-NMS ``candidates`` (segments in grid steps, scores,
    labels, as their inference_single_video selects them), and with ``nms`` their final ``detections``
    (segments in seconds, scores, labels, after their batched Soft-NMS)."""
    model.eval()
    decoded: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    captured: dict[str, Any] = {}
    cls = type(model)

    def decode_offset(out_offsets, start_nb, end_nb, sta, end, points):
        refined = cls.decode_offset(model, out_offsets, start_nb, end_nb, sta, end, points)
        coarse = cls.before_refine_decode_offset(model, out_offsets, start_nb, end_nb)
        offsets = torch.stack([sta, end], -1)  # (K, T_l, 2): R_so, R_eo in grid steps
        decoded.append((refined.transpose(0, 1), coarse.transpose(0, 1), offsets.transpose(0, 1)))  # (T_l, K, 2)
        return refined

    def inference(video_list, points, fpn_masks, out_cls_logits, *rest):
        captured["masks"] = [m[0] for m in fpn_masks]
        captured["scores"] = [c[0].sigmoid() for c in out_cls_logits]
        return cls.inference(model, video_list, points, fpn_masks, out_cls_logits, *rest)

    model.decode_offset, model.inference = decode_offset, inference
    model.postprocessing = lambda results: results
    try:
        candidates = model([item])[0]
    finally:
        del model.decode_offset, model.inference, model.postprocessing
    detections = cls.postprocessing(model, [candidates])[0] if nms else None
    valid = [int(m.sum()) for m in captured["masks"]]
    keys = ("segments", "scores", "labels")
    return {  # compact copies (a slice would keep, and save, its whole canvas)
        "scores": [s[:n].clone() for s, n in zip(captured["scores"], valid)],
        "distances": [d[0][:n].clone() for d, n in zip(decoded, valid)],
        "coarse": [d[1][:n].clone() for d, n in zip(decoded, valid)],
        "offsets": [d[2][:n].clone() for d, n in zip(decoded, valid)],
        "candidates": {k: candidates[k].clone() for k in keys},
        "detections": None if detections is None else {k: detections[k].clone() for k in keys},
    }
