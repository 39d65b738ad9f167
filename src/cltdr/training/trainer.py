"""The training loop: AdamW, warm-up + cosine schedule, clipping, EMA, atomic per-epoch checkpoints, resume.

Training writes a run directory (its layout: ``cltdr.runs``). Resuming reloads weights,
optimiser, schedule, EMA, loss normaliser, GradScaler and RNG state at the last completed epoch; crops and
shuffling derive from (seed, epoch), so the resumed run continues exactly as the uninterrupted one would have.

Launched by torchrun, every process trains a DistributedDataParallel copy of the model on its share of each
global batch (``cltdr.data.sampler``): the gradients are summed over the processes (each process's loss is its
share of the global batch's, the counts it divides by summed over the processes), so the processes take the
steps one process would take with the global batch, and keep identical weights, EMA and loss normaliser. Only
the first process writes the run's files, logs and progress bars; validation is split over the processes.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cltdr.config import Config
from cltdr.data.build import (
    check_data_paths,
    class_names,
    load_split,
    make_dataset,
    make_loader,
    relative_note,
    resolve_paths,
)
from cltdr.data.check import preflight
from cltdr.data.sampler import GlobalBatchSampler
from cltdr.errors import CltdrError, DataError
from cltdr.extract.card import check_same, config_card, fill_config, read_card, write_card
from cltdr.inference.runner import evaluate_split
from cltdr.model import Detector, build_detector
from cltdr.runs import (
    RunDir,
    check_compatible,
    load_resumable,
    lookup_key,
    run_config,
    save_checkpoint,
    save_last,
    select_device,
)
from cltdr.training.ema import ModelEMA
from cltdr.training.logger import RunLogger
from cltdr.training.schedule import warmup_cosine
from cltdr.utils import distributed
from cltdr.utils.amp import autocast
from cltdr.utils.io import atomic_write_text, remove_stale_temporaries
from cltdr.utils.text import duration

# Keys that fix the learning-rate schedule: a resumed run must keep them (its optimiser and scheduler state were
# stepped along that schedule; LambdaLR even restores the old peak lr from its state).
SCHEDULE_KEYS = ("train.epochs", "train.warmup_epochs", "train.batch_size", "train.lr")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and other 1-D parameters."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def check_same_schedule(saved: dict, config: dict, source: str | Path, run_root: Path) -> None:
    """Raise naming every :data:`SCHEDULE_KEYS` key whose value differs between a run's saved config (from
    ``source``) and the config it is resumed with."""
    pairs = [(key, lookup_key(saved, key), lookup_key(config, key)) for key in SCHEDULE_KEYS]
    diffs = [(key, old, new) for key, old, new in pairs if old not in (None, {}) and old != new]
    if not diffs:
        return
    lines = "\n".join(f"  {key}: the run has {old!r} ({source}), the config has {new!r}" for key, old, new in diffs)
    keep = " ".join(f"{key}={old}" for key, old, _ in diffs)
    raise CltdrError(
        f"--resume cannot change the learning-rate schedule of the run in {run_root}:\n{lines}\n"
        f"resume with the run's values (drop the change, or --set {keep}), or train a new run with another "
        "--out (a resumed run continues the schedule it started with; extending it is not supported)"
    )


def _rng_state(device: torch.device | None = None) -> dict:
    """The generators' states; ``device``: a process of a distributed run keeps only its own GPU's (reading
    every GPU's would open a CUDA context on each from every process)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"].cpu(), device)
    elif "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# The loss normaliser is kept alike in every process by summed counts: not broadcast from the first before each
# forward (torch >= 2.13 names the switch forward_sync_buffers, and deprecates broadcast_buffers).
_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


class _Loss(torch.nn.Module):
    """The detector's loss as a module's forward: what DistributedDataParallel wraps (its gradient hooks are
    prepared in forward, and ``Detector.forward`` returns outputs, not the loss)."""

    def __init__(self, model: Detector):
        super().__init__()
        self.model = model

    def forward(self, feats, mask, segments, labels) -> dict[str, torch.Tensor]:
        return self.model.loss(feats, mask, segments, labels)


class Trainer:
    """``config_file``: where ``cfg`` was read from, named in errors about its relative paths."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        config_file: str | Path | None = None,
    ):
        self.run = RunDir(run_dir)
        self.proc, self.device = distributed.start(select_device(cfg.train.device))
        self.progress = progress and self.proc.main
        if self.run.trained and not resume:
            raise CltdrError(
                f"{self.run.root} already holds a run; pass --resume to continue it or choose another --out"
            )
        check_data_paths(cfg, config_file)  # a missing folder once, not once per video
        # Features of `cltdr extract`: their card fills the grid keys (a config built in code did not pass through
        # load_config), and is kept in the run, for detection on videos and for refusing other features.
        cfg = fill_config(cfg, str(config_file or "the config"))
        card, card_file = config_card(cfg)
        relative = relative_note(cfg)
        cfg = resolve_paths(cfg)
        self.cfg = cfg
        seed_everything(cfg.train.seed)
        try:
            self.train_split = load_split(cfg, cfg.dataset.train_subset)
            self.class_names = class_names(cfg)
            self.train_set = make_dataset(cfg, self.train_split, training=True)
            self._preflight()
        except DataError as e:
            if not relative:
                raise
            raise DataError(f"{e}\n({relative})") from None
        self.model = build_detector(cfg, len(self.class_names)).to(self.device)
        t = cfg.train
        self.net: torch.nn.Module = _Loss(self.model)  # the loss of a batch
        if self.proc.distributed:
            # The same initial weights in every process (seeded alike); then its own stream of stochastic depth.
            if self.proc.rank:
                torch.manual_seed(t.seed + 1_000_003 * self.proc.rank)
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device] if self.device.type == "cuda" else None, **_NO_BUFFER_SYNC
            )
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.weight_decay), lr=t.lr)
        # fp16 needs loss scaling (its range); a disabled scaler passes everything through unchanged.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")
        self.global_batch = t.batch_size * self.proc.world_size
        self.iters_per_epoch = math.ceil(len(self.train_set) / self.global_batch)
        self.total_epochs = t.warmup_epochs + t.epochs
        # The schedule closes over these numbers, not over self: a reference cycle would keep the trainer (and a
        # distributed run's process group) alive after fit() until the next garbage collection.
        warmup, total = t.warmup_epochs * self.iters_per_epoch, self.total_epochs * self.iters_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, warmup_steps=warmup, total_steps=total)
        )
        self.ema = ModelEMA(self.model, t.ema_decay, t.ema_warmup) if t.ema_decay else None
        self.epoch = 0
        self.best: dict | None = None
        self.resumed = resume
        if resume and card is not None and self.run.feature_card.is_file():
            check_same(
                read_card(self.run.feature_card),
                str(self.run.feature_card),
                card,
                str(card_file),
                hint="--resume continues on the features the run started on: point dataset.feat_dir at them",
            )
        if resume:
            # Read to the host: the generators' states must be CPU tensors (torch.set_rng_state refuses CUDA ones);
            # load_state_dict copies the weights and the optimiser's moments to the model's device.
            state, path, passed_over = load_resumable(self.run)
            if passed_over:
                warnings.warn(f"{passed_over}; resuming from {path}, the checkpoint of the epoch before")
            self._load(state, path)
            if self.proc.main:
                print(f"resumed at epoch {self.epoch}, step {self.step} ({path})", flush=True)
        distributed.barrier()  # every process has read the run before the first one rewrites its config
        if self.proc.main:
            for folder in (self.run.root, self.run.checkpoints):  # left by a process killed while writing
                remove_stale_temporaries(folder)
            atomic_write_text(self.run.config, cfg.to_yaml())
            if card is not None:
                write_card(self.run.root, card)

    def _preflight(self) -> None:
        """Check every video of the training, validation and test subsets before the first epoch (a NaN in a test
        file is found now, not after hours of training)."""
        d = self.cfg.dataset
        preflight(self.train_set)
        checked = {d.train_subset.lower()}
        for subset in (d.val_subset, d.test_subset):
            if subset is not None and subset.lower() not in checked:  # subset names are case-insensitive
                checked.add(subset.lower())
                preflight(make_dataset(self.cfg, load_split(self.cfg, subset), training=False))

    # --------------------------------------------------------------------------------------- state
    def _state(self) -> dict:
        """The checkpoint. A distributed run (every process calls this: it gathers their generators) keeps the
        number of processes and each one's RNG state; fp16 training the GradScaler's."""
        state = {
            "config": self.cfg.model_dump(mode="json"),
            "class_names": self.class_names,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "best": self.best,
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.proc.distributed:
            state["world_size"] = self.proc.world_size
            state["rng"] = distributed.gather(_rng_state(self.device))  # one per process, in rank order
        return state

    @property
    def step(self) -> int:
        """Optimiser steps taken: those of the completed epochs."""
        return self.epoch * self.iters_per_epoch

    def _load(self, state: dict, path: Path) -> None:
        saved = run_config(self.run.root).model_dump(mode="json")
        config = self.cfg.model_dump(mode="json")
        check_compatible(saved, config, self.run.config)
        check_compatible(state["config"], config, path)
        check_same_schedule(saved, config, self.run.config, self.run.root)
        check_same_schedule(state["config"], config, path, self.run.root)
        world = state.get("world_size", 1)
        if world != self.proc.world_size:
            b = self.cfg.train.batch_size
            raise CltdrError(
                f"--resume: checkpoint {path} was trained by {world} process(es) (global batch {world} x {b}), "
                f"this run has {self.proc.world_size}: resume with the same number of processes (torchrun "
                f"--nproc_per_node and --nnodes; none for one process), or train a new run with another --out"
            )
        steps, epoch = state["scheduler"]["last_epoch"], state["epoch"]
        if steps != epoch * self.iters_per_epoch:
            raise CltdrError(
                f"--resume: checkpoint {path} took {steps} optimiser steps in {epoch} epochs, but subset "
                f"{self.cfg.dataset.train_subset!r} now has {len(self.train_set)} videos, "
                f"{self.iters_per_epoch} batches of {self.global_batch} an epoch: the learning-rate "
                "schedule would change; resume with the training videos the run started with, or train a new "
                "run with another --out"
            )
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.proc.distributed:
            _set_rng_state(state["rng"][self.proc.rank], self.device)
        else:
            _set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.best = state.get("best")

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema else self.model

    # ---------------------------------------------------------------------------------------- loop
    def train_epoch(self, logger: RunLogger | None) -> dict[str, float]:
        """One epoch; the means of its losses over the global batches (``logger``: None in the processes of a
        distributed run that do not write)."""
        self.model.train()
        loader = make_loader(self.cfg, self.train_set, training=True, epoch=self.epoch, proc=self.proc)
        sampler = loader.batch_sampler if isinstance(loader.batch_sampler, GlobalBatchSampler) else None
        sums: dict[str, float] = {}
        bar = tqdm(
            loader,
            desc=f"epoch {self.epoch + 1}/{self.total_epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for i, batch in enumerate(bar):
            batch = batch.to(self.device)
            stand_in = sampler is not None and sampler.stand_in(i)  # an empty share: its loss counts 0
            ignored = distributed.counts_ignored() if stand_in else contextlib.nullcontext()
            with autocast(self.device, self.cfg.train.amp), ignored:
                losses = self.net(batch.feats, batch.mask, batch.segments, batch.labels)
            values = self._global_values(losses, stand_in)
            if not math.isfinite(values["loss"]):
                raise CltdrError(
                    f"training diverged: loss is {values['loss']} at epoch {self.epoch + 1}, iteration {i}; "
                    "lower train.lr or check the features for extreme values"
                )
            loss = losses["loss"]
            if self.proc.distributed:  # DistributedDataParallel averages gradients: the global loss's is their sum
                loss = loss * (0.0 if stand_in else self.proc.world_size)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.train.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            step = self.epoch * self.iters_per_epoch + i
            if self.ema:
                self.ema.update(self.model, step)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if logger is not None and step % self.cfg.train.log_every == 0:
                logger.log(step, epoch=self.epoch + 1, lr=self.scheduler.get_last_lr()[0], **values)
        return {k: v / max(len(loader), 1) for k, v in sums.items()}

    def _global_values(self, losses: dict[str, torch.Tensor], stand_in: bool) -> dict[str, float]:
        """The losses of the global batch: each process's share summed over the processes (a stand-in adds 0);
        the batch's own in one process. One host sync a step (stacked, not an ``.item()`` per value)."""
        shares = torch.stack([v.detach().float() for v in losses.values()])
        if self.proc.distributed:
            shares = distributed.global_sum(shares * (0.0 if stand_in else 1.0))
        return dict(zip(losses, shares.tolist()))

    def fit(self) -> Path:
        main = self.proc.main
        logger = RunLogger(self.run, resume=(self.epoch, self.step) if self.resumed else None) if main else None
        last = self.run.last
        val = self.cfg.dataset.val_subset
        seconds: list[float] = []  # of each epoch of this session, validation included
        try:
            while self.epoch < self.total_epochs:
                start = time.perf_counter()
                means = self.train_epoch(logger)
                self.epoch += 1
                summary = {f"epoch_{k}": v for k, v in means.items()}
                if val:
                    summary["val_average_mAP"] = self.validate(val)
                if logger is not None:
                    logger.log(self.epoch * self.iters_per_epoch, epoch=self.epoch, **summary)
                if val and (self.best is None or summary["val_average_mAP"] > self.best["average_mAP"]):
                    self.best = {"epoch": self.epoch, "average_mAP": summary["val_average_mAP"]}
                    state = self._state()
                    if main:
                        save_checkpoint(self.run.best, state)
                state = self._state()
                if main:
                    save_last(self.run, state)
                seconds.append(time.perf_counter() - start)
                if self.progress:
                    tqdm.write(self._epoch_line(summary, seconds))
        finally:
            if logger is not None:
                logger.close()
        return last

    def _epoch_line(self, summary: dict[str, float], seconds: list[float]) -> str:
        """The epoch's line: its last learning rate, its time, the time left (at this session's mean epoch time),
        then its means and validation mAP."""
        eta = sum(seconds) / len(seconds) * (self.total_epochs - self.epoch)
        shown = ", ".join(f"{k}={v:.4f}" for k, v in summary.items())
        return (
            f"epoch {self.epoch}/{self.total_epochs}: lr {self.scheduler.get_last_lr()[0]:.3g}, "
            f"{duration(seconds[-1])}, ETA {duration(eta)}; {shown}"
        )

    def validate(self, subset: str) -> float:
        result = evaluate_split(
            self.cfg, self.eval_model, subset, self.class_names, self.device, progress=self.progress, proc=self.proc
        )
        return result.metrics.average_mAP
