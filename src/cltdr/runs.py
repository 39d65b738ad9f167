"""A run directory: the one place that says which file is where, its checkpoints, and loading a trained model.

    RUN/config.yaml                 the resolved config the run trained with
    RUN/feature_card.json           the card of its features, when they came from ``cltdr extract``
                                    (``cltdr.extract.card``): ``cltdr detect`` extracts videos as it says
    RUN/checkpoints/last.pt         the state after the last completed epoch (``--resume`` continues from it);
                                    ``cltdr import-checkpoint``: the authors' released weights
    RUN/checkpoints/prev.pt         the state of the epoch before (``--resume`` falls back to it when last.pt
                                    cannot be read)
    RUN/checkpoints/best.pt         the best epoch on ``dataset.val_subset``, when one is named
    RUN/log.jsonl, RUN/tb/          training logs: one JSON object per line, TensorBoard scalars
    RUN/predictions.json            ``cltdr test``: detections (ActivityNet result format) ...
    RUN/metrics.json                ... and their mAP
    RUN/predictions_fused.json, RUN/metrics_fused.json   the same with external class scores (``dataset.fusion``)
    RUN/result.json                 one run's summary (``cltdr ablate``, ``--seeds``)
    RUN/seeds.json, RUN/seed-<S>/   ``--seeds``: mean +- std over the seeds, and each seed's own run

Checkpoints are written atomically and checked against the config they are loaded with; a file ``.<name>.*.tmp``
is one being written (left behind only by a process killed meanwhile: training removes them when it starts).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from cltdr.config import Config, config_from_dict, unread_sections
from cltdr.errors import CheckpointError, CltdrError, ConfigError
from cltdr.extract.card import card_path
from cltdr.utils.io import atomic_write

CHECKPOINT_FORMAT = "cltdr-checkpoint-v1"
# Keys whose change makes a checkpoint's weights meaningless for a config (the architecture and its inputs).
ARCHITECTURE_KEYS = ("model", "dataset.input_dim", "dataset.class_names")
# Keys added after runs were first saved, with the value that rebuilds (model) or continues (loss) what such a
# run trained (the default for new runs may differ): a run's config.yaml without the key gets this value, so old
# runs still load and resume as they trained. Only keys of the model sections a run reads apply (keys_before).
RUN_KEYS_BEFORE = {
    "model.gmg.filter": "conv",
    "loss.coarse_cls": "varifocal",
    "model.cltdr.offset_init": "default",
    "model.cltdr.clamp_refined": False,
    "model.cltdr.depthwise": False,
    "model.cltdr.depthwise_up": False,
    "model.cltdr.shared_refine": False,
    "model.cltdr.refine_depthwise": False,
    "model.cltdr.detach_boundary": False,
}


def unread_keys(model: dict[str, Any]) -> tuple[str, ...]:
    """The prefixes of the dotted keys that a run with this model section (a dict) does not read."""
    return tuple(f"model.{section}." for section in sorted(unread_sections(model)))


def keys_before(model: dict[str, Any]) -> dict[str, Any]:
    """The :data:`RUN_KEYS_BEFORE` entries that apply to a run with this model section (a dict): none of a
    section the run does not read (model.cltdr for the TriDet decoder, say)."""
    unread = unread_keys(model)
    return {k: v for k, v in RUN_KEYS_BEFORE.items() if not k.startswith(unread)}


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or read here)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / "config.yaml")
    feature_card = property(lambda self: card_path(self.root))
    checkpoints = property(lambda self: self.root / "checkpoints")
    last = property(lambda self: self.checkpoints / "last.pt")
    prev = property(lambda self: self.checkpoints / "prev.pt")
    best = property(lambda self: self.checkpoints / "best.pt")
    log = property(lambda self: self.root / "log.jsonl")
    tensorboard = property(lambda self: self.root / "tb")
    result = property(lambda self: self.root / "result.json")
    seeds = property(lambda self: self.root / "seeds.json")

    def predictions(self, fused: bool = False) -> Path:
        return self.root / ("predictions_fused.json" if fused else "predictions.json")

    def metrics(self, fused: bool = False) -> Path:
        return self.root / ("metrics_fused.json" if fused else "metrics.json")

    def seed(self, seed: int) -> RunDir:
        return RunDir(self.root / f"seed-{seed}")

    @property
    def trained(self) -> bool:
        """Whether a run was (at least partly) trained here: ``last.pt`` or ``prev.pt`` exists."""
        return self.last.exists() or self.prev.exists()

    def checkpoint(self, which: str | Path | None = None) -> Path:
        """'last', 'best', a path, or None: best when the run kept one, else last. 'best' of a run without
        ``best.pt`` is an error (never last instead)."""
        if which is None:
            which = "best" if self.best.exists() else "last"
        if str(which) == "best" and not self.best.exists():
            raise CheckpointError(
                f"--checkpoint best: {self.best} does not exist (a run keeps the best epoch only when its "
                "config sets dataset.val_subset); use --checkpoint last"
            )
        return {"last": self.last, "best": self.best}.get(str(which), Path(which))


# ------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()), mode="wb")


def save_last(run: RunDir, state: dict[str, Any]) -> Path:
    """Write ``state`` as the run's ``last.pt``, the ``last.pt`` before it becoming ``prev.pt`` (killed in between,
    the run keeps ``prev.pt``, which :func:`load_resumable` falls back to)."""
    if run.last.exists():
        run.last.replace(run.prev)
    return save_checkpoint(run.last, state)


def load_resumable(run: RunDir, map_location="cpu") -> tuple[dict[str, Any], Path, str | None]:
    """The checkpoint a resumed run continues from, its path, and why ``last.pt`` was passed over (None when it
    was not): ``last.pt``, else ``prev.pt`` when ``last.pt`` is missing or cannot be read."""
    try:
        return load_checkpoint(run.last, map_location), run.last, None
    except CheckpointError as e:
        why = str(e)
    start_over = (
        f"delete {run.checkpoints} (or choose another --out) and train without --resume"
        if run.trained
        else "train without --resume"
    )
    if not run.prev.is_file():
        raise CheckpointError(
            f"nothing to resume in {run.root}: {why}, and there is no {run.prev.name} to fall back to; "
            f"to start over, {start_over}"
        )
    try:
        return load_checkpoint(run.prev, map_location), run.prev, why
    except CheckpointError as e:
        raise CheckpointError(f"nothing to resume in {run.root}: {why}, and {e}; to start over, {start_over}") from None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a cltdr checkpoint (expected format {CHECKPOINT_FORMAT})")
    return state


def lookup_key(tree: dict, dotted: str) -> Any:
    """The value of a dotted key in a nested config dict ({} when it is missing)."""
    for part in dotted.split("."):
        tree = tree.get(part, {}) if isinstance(tree, dict) else None
    return tree


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as {dotted key: leaf}, each key below ``prefix``; a leaf itself is {prefix: value}. An
    empty section has no leaf, and so no key: :func:`lookup_key` reads it back as {} all the same."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def check_compatible(ckpt_config: dict, config: dict, source: str | Path) -> None:
    """Raise naming every architecture key where the checkpoint's config and ``config`` differ.

    A key the checkpoint does not record was added to the config after it was written: not a difference (the
    run's config.yaml, read by :func:`run_config`, says what the run trained with; loading the weights says
    where they do not fit). Nor is a model section the model does not read (:func:`unread_keys`).
    """
    diffs, unread = [], unread_keys(lookup_key(config, "model") or {})
    for key in ARCHITECTURE_KEYS:
        a, b = flatten(lookup_key(ckpt_config, key), key), flatten(lookup_key(config, key), key)
        for k in sorted(set(a) | set(b)):
            if (k not in a and k in b) or k.startswith(unread):
                continue
            if a.get(k) != b.get(k):
                diffs.append(f"  {k}: checkpoint has {a.get(k)!r}, config has {b.get(k)!r}")
    if diffs:
        raise CheckpointError(f"checkpoint {source} was trained with another configuration:\n" + "\n".join(diffs))


# ---------------------------------------------------------------------------------------------------- loading
def select_device(name: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available on this machine")
    return torch.device(name)


def run_config(run_dir: str | Path) -> Config:
    """The config a run trained with (its config.yaml, with :data:`RUN_KEYS_BEFORE` for older runs)."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise CltdrError(f"{run.root} is not a cltdr run directory (no config.yaml); train one with `cltdr train`")
    data = yaml.safe_load(run.config.read_text())
    if isinstance(data, dict) and isinstance(data.setdefault("model", {}), dict):  # else config_from_dict says
        model = data["model"]
        # A section the run does not read holds the defaults of the day it was saved, which a later release may
        # have changed (and a section not read must hold today's): the run never used it, so today's apply.
        for section in unread_sections(model):
            model.pop(section, None)
        for key, value in keys_before(model).items():
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(last, value)
    return config_from_dict(data, str(run.config))


def import_released_run(checkpoint: str | Path, cfg: Config, out: str | Path) -> RunDir:
    """Write a run directory holding a checkpoint of the authors' released code (``cltdr import-checkpoint``).

    ``cfg`` must select ``model.variant: released``; its data paths are made absolute and its class list is read
    (``dataset.class_names``, else the annotation file), as a trained run's are. The run's ``last.pt`` holds the
    released EMA weights as ``ema`` and their optimiser's weights as ``model``, so ``cltdr test``, ``detect`` and
    ``diagnose`` use it as any other run.
    """
    from cltdr.data.build import resolve_paths
    from cltdr.model import build_detector
    from cltdr.model.released.checkpoint import map_state, num_classes_of, read_checkpoint

    run = RunDir(out)
    if cfg.model.variant != "released":
        raise ConfigError(
            f"model.variant is {cfg.model.variant!r}: a released checkpoint needs a config with "
            "model.variant 'released' (configs/released/)"
        )
    if run.trained or run.config.exists():
        raise CltdrError(f"{run.root} already holds a run; choose another --out")
    released = read_checkpoint(checkpoint)
    cfg = resolve_paths(cfg)
    names = cfg.dataset.class_names or []
    k = num_classes_of(released.ema, str(checkpoint))
    if k != len(names):
        raise CheckpointError(
            f"checkpoint {checkpoint} predicts {k} classes, the config's dataset has {len(names)} "
            f"({cfg.dataset.annotation_file}); use the config of the setting it was trained for"
        )
    model = build_detector(cfg, k)
    ema = map_state(released.ema, model, str(checkpoint))
    raw = ema if released.raw is released.ema else map_state(released.raw, model, str(checkpoint))
    model.load_state_dict(ema)  # strict: every tensor of the model is set
    atomic_write(run.config, lambda f: f.write(cfg.to_yaml()))
    save_checkpoint(
        run.last,
        {
            "config": cfg.model_dump(mode="json"),
            "class_names": names,
            "epoch": released.epoch,
            "model": raw,
            "ema": ema,
            "imported_from": str(Path(checkpoint).resolve()),
        },
    )
    return run


def load_trained_model(
    run_dir: str | Path, checkpoint: str | Path | None = None, device: str = "auto", weights: str = "ema"
):
    """A run's config, its model with the evaluation weights in eval mode, and the device it is on.

    ``checkpoint`` is a path, 'last', 'best', or None (best when the run kept one, else last). ``weights``:
    'ema' (the EMA when the run kept one, else the raw weights) or 'raw' (the optimiser's weights).
    """
    from cltdr.data.build import class_names
    from cltdr.model import build_detector

    run = RunDir(run_dir)
    cfg = run_config(run.root)
    path = run.checkpoint(checkpoint)
    dev = select_device(device if device != "auto" else cfg.train.device)
    state = load_checkpoint(path, map_location=dev)
    check_compatible(state["config"], cfg.model_dump(mode="json"), path)
    total = cfg.train.warmup_epochs + cfg.train.epochs
    if "imported_from" not in state and state.get("epoch", total) < total:
        warnings.warn(
            f"{path} holds epoch {state['epoch']} of {total}: the run is unfinished (continue it with "
            f"`cltdr train CONFIG --out {run.root} --resume`)"
        )
    model = build_detector(cfg, len(class_names(cfg))).to(dev)
    if weights not in ("ema", "raw"):
        raise CltdrError(f"weights={weights!r}: expected 'ema' or 'raw'")
    chosen = state["ema"] if weights == "ema" and state.get("ema") is not None else state["model"]
    try:
        model.load_state_dict(chosen)
    except RuntimeError as e:
        raise CltdrError(f"checkpoint {path} does not fit the model of {run.config}: {e}") from None
    return cfg, model.eval(), dev
