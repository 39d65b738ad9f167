"""The training loop: AdamW, warm-up + cosine schedule, clipping, EMA, atomic per-epoch checkpoints, resume.

A run directory holds ``config.yaml`` (the resolved config), ``checkpoints/last.pt`` (and ``best.pt`` when a
validation subset is named), ``log.jsonl`` and TensorBoard scalars under ``tb/``. Resuming reloads weights,
optimiser, schedule, EMA, loss normaliser and RNG state at the last completed epoch; crops and shuffling
derive from (seed, epoch), so the resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ..config import Config, config_from_dict
from ..data.build import check_features, load_split, make_dataset, make_loader, resolve_paths
from ..errors import CltdrError, ConfigError
from ..model import build_detector
from ..utils.io import atomic_write_text
from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .ema import ModelEMA
from .logger import RunLogger
from .schedule import warmup_cosine


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and other 1-D parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Model keys added after runs were first saved, with the value that rebuilds what such a run trained (the
# default for new runs may differ): a run's config.yaml without the key gets this value, so old runs still load.
RUN_KEYS_BEFORE = {"model.cltdr.offset_init": "default", "model.cltdr.clamp_refined": False,
                   "model.cltdr.depthwise": False, "model.cltdr.depthwise_up": False,
                   "model.cltdr.shared_refine": False, "model.cltdr.detach_boundary": False}


def run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CltdrError(f"{run_dir} is not a cltdr run directory (no config.yaml); train one with `cltdr train`")
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and data["model"].get("decoder", "cltdr") == "cltdr":
        for key, value in RUN_KEYS_BEFORE.items():
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(last, value)
    return config_from_dict(data, str(path))


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.progress = progress
        last = self.ckpt_dir / "last.pt"
        cfg = resolve_paths(cfg)
        if last.exists() and not resume:
            raise CltdrError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --out")
        if resume and not last.exists():
            raise CltdrError(f"nothing to resume in {self.run_dir}: {last} does not exist")
        self.cfg = cfg
        self.device = select_device(cfg.train.device)
        seed_everything(cfg.train.seed)

        self.train_split = load_split(cfg, cfg.dataset.train_subset)
        self.class_names = cfg.dataset.class_names
        self.train_set = make_dataset(cfg, self.train_split, training=True)
        check_features(self.train_set)  # fail before the first epoch, not in the middle of one
        if cfg.dataset.val_subset:
            check_features(make_dataset(cfg, load_split(cfg, cfg.dataset.val_subset), training=False))
        self.model = build_detector(cfg, len(self.class_names)).to(self.device)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.weight_decay), lr=t.lr)
        self.iters_per_epoch = math.ceil(len(self.train_set) / t.batch_size)
        self.total_epochs = t.warmup_epochs + t.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: warmup_cosine(step, warmup_steps=t.warmup_epochs * self.iters_per_epoch,
                                       total_steps=self.total_epochs * self.iters_per_epoch))
        self.ema = ModelEMA(self.model, t.ema_decay, t.ema_warmup) if t.ema_decay else None
        self.epoch = 0
        self.best: dict | None = None
        if resume:
            self._load(last)
        atomic_write_text(self.run_dir / "config.yaml", cfg.to_yaml())

    # --------------------------------------------------------------------------------------- state
    def _state(self) -> dict:
        return {
            "config": self.cfg.model_dump(mode="json"), "class_names": self.class_names, "epoch": self.epoch,
            "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(), "best": self.best,
        }

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        saved = run_config(self.run_dir).model_dump(mode="json")
        check_compatible(saved, self.cfg.model_dump(mode="json"), self.run_dir / "config.yaml")
        check_compatible(state["config"], self.cfg.model_dump(mode="json"), path)
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.best = state.get("best")

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema else self.model

    # ---------------------------------------------------------------------------------------- loop
    def train_epoch(self, logger: RunLogger) -> dict[str, float]:
        self.model.train()
        loader = make_loader(self.cfg, self.train_set, training=True, epoch=self.epoch)
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.total_epochs}", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        for i, batch in enumerate(bar):
            batch = batch.to(self.device)
            losses = self.model.loss(batch.feats, batch.mask, batch.segments, batch.labels)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                raise CltdrError(f"training diverged: loss is {loss.item()} at epoch {self.epoch + 1}, iteration {i}; "
                                 "lower train.lr or check the features for extreme values")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.train.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            step = self.epoch * self.iters_per_epoch + i
            if self.ema:
                self.ema.update(self.model, step)
            values = {k: v.item() for k, v in losses.items()}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if step % self.cfg.train.log_every == 0:
                logger.log(step, epoch=self.epoch + 1, lr=self.scheduler.get_last_lr()[0], **values)
        return {k: v / max(len(loader), 1) for k, v in sums.items()}

    def fit(self) -> Path:
        logger = RunLogger(self.run_dir)
        last = self.ckpt_dir / "last.pt"
        val = self.cfg.dataset.val_subset
        try:
            while self.epoch < self.total_epochs:
                means = self.train_epoch(logger)
                self.epoch += 1
                summary = {f"epoch_{k}": v for k, v in means.items()}
                if val:
                    summary["val_average_mAP"] = self.validate(val)
                logger.log(self.epoch * self.iters_per_epoch, epoch=self.epoch, **summary)
                if val and (self.best is None or summary["val_average_mAP"] > self.best["average_mAP"]):
                    self.best = {"epoch": self.epoch, "average_mAP": summary["val_average_mAP"]}
                    save_checkpoint(self.ckpt_dir / "best.pt", self._state())
                save_checkpoint(last, self._state())
                if self.progress:
                    shown = ", ".join(f"{k}={v:.4f}" for k, v in summary.items())
                    tqdm.write(f"epoch {self.epoch}/{self.total_epochs}: {shown}")
        finally:
            logger.close()
        return last

    def validate(self, subset: str) -> float:
        from ..inference.runner import evaluate_split  # late import: inference depends on training's helpers

        result = evaluate_split(self.cfg, self.eval_model, subset, self.class_names, self.device, progress=False)
        return result.metrics.average_mAP


def load_trained_model(run_dir: str | Path, checkpoint: str | Path | None = None, device: str = "auto",
                       weights: str = "ema"):
    """A run's config and its model with the evaluation weights, in eval mode.

    ``checkpoint`` is a path, 'last', 'best', or None (best when the run kept one, else last). ``weights``:
    'ema' (the EMA when the run kept one, else the raw weights) or 'raw' (the optimiser's weights).
    """
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if checkpoint is None:
        checkpoint = "best" if (run_dir / "checkpoints" / "best.pt").exists() else "last"
    path = run_dir / "checkpoints" / f"{checkpoint}.pt" if checkpoint in ("last", "best") else Path(checkpoint)
    dev = select_device(device if device != "auto" else cfg.train.device)
    state = load_checkpoint(path, map_location=dev)
    check_compatible(state["config"], cfg.model_dump(mode="json"), path)
    model = build_detector(cfg, len(cfg.dataset.class_names)).to(dev)
    if weights not in ("ema", "raw"):
        raise CltdrError(f"weights={weights!r}: expected 'ema' or 'raw'")
    chosen = state["ema"] if weights == "ema" and state.get("ema") is not None else state["model"]
    try:
        model.load_state_dict(chosen)
    except RuntimeError as e:
        raise CltdrError(f"checkpoint {path} does not fit the model of {run_dir / 'config.yaml'}: {e}") from None
    return cfg, model.eval(), dev
