"""From a config to annotation sets, datasets and loaders (the config translation lives here, not in them)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cltdr.config import Config
from cltdr.data.annotations import AnnotationSet, load_annotations, read_class_names
from cltdr.data.dataset import TALDataset, make_collate
from cltdr.data.features import HDF5_SUFFIXES, FeatureStore
from cltdr.data.sampler import GlobalBatchSampler
from cltdr.errors import DataError
from cltdr.utils.distributed import Process

AGNOSTIC_LABEL = "action"  # the one class of a class-agnostic model, unless dataset.class_names names it


def class_names(cfg: Config) -> list[str]:
    """The model's classes: ``dataset.class_names``, else the annotation file's (one merged class when
    ``dataset.class_agnostic``)."""
    d = cfg.dataset
    if d.class_names:
        return list(d.class_names)
    return [AGNOSTIC_LABEL] if d.class_agnostic else read_class_names(d.annotation_file)


def load_split(cfg: Config, subset: str) -> AnnotationSet:
    """The videos of one subset with labels indexing :func:`class_names`; ``dataset.feat_fps`` replaces every
    video's fps, and a class-agnostic dataset relabels every action 0 (labels are still checked against the
    file's own classes)."""
    d = cfg.dataset
    names = None if d.class_agnostic else class_names(cfg)
    split = load_annotations(
        d.annotation_file,
        subsets=[subset],
        class_names=names,
        default_fps=d.default_fps,
        segment_policy=d.segment_policy,
    )
    if not (d.class_agnostic or d.feat_fps):
        return split
    videos = []
    for rec in split.videos:
        labels = np.zeros_like(rec.labels) if d.class_agnostic else rec.labels
        labels.setflags(write=False)
        videos.append(dataclasses.replace(rec, fps=d.feat_fps or rec.fps, labels=labels))
    return AnnotationSet(videos, class_names(cfg))


def pyramid_name(cfg: Config) -> str:
    """What needs a video of at least ``cfg.divisor`` steps, as quoted in a too-short-video error."""
    return f"the {cfg.model.num_levels}-level pyramid (coarsest stride {cfg.divisor})"


def feature_store(cfg: Config) -> FeatureStore:
    d = cfg.dataset
    return FeatureStore(
        sources=tuple(d.feat_sources),
        input_dim=d.input_dim,
        feat_stride=d.feat_stride,
        num_frames=d.num_frames,
        prefix=d.feat_prefix,
        ext=d.feat_ext,
        keys=tuple(d.feat_keys) if d.feat_keys else None,
        layout=d.feat_layout,
        downsample_rate=d.downsample_rate,
        resize_to=d.resize_to,
    )


def make_dataset(cfg: Config, split: AnnotationSet, training: bool) -> TALDataset:
    d = cfg.dataset
    return TALDataset(
        split.videos,
        store=feature_store(cfg),
        training=training,
        max_seq_len=d.max_seq_len,
        crop_ratio=d.crop_ratio if training else None,
        trunc_thresh=d.trunc_thresh,
        noise_std=d.noise_std if training else 0.0,
        min_length=cfg.divisor,
        min_length_reason=pyramid_name(cfg),
        seed=cfg.train.seed,
    )


def make_loader(
    cfg: Config, dataset: TALDataset, training: bool, epoch: int = 0, proc: Process | None = None
) -> DataLoader:
    """Training loaders shuffle with a generator seeded by (seed, epoch), so a resumed epoch replays exactly.

    ``proc``: a process of a distributed run (``cltdr.utils.distributed``) trains on its share of global batches of
    ``train.batch_size`` x world size videos, drawn from the same generator (``cltdr.data.sampler``).
    """
    generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
    dataset.set_epoch(epoch)
    collate_fn = make_collate(cfg.divisor)
    if training and proc is not None and proc.distributed:
        sampler = GlobalBatchSampler(
            len(dataset), cfg.train.batch_size, rank=proc.rank, world_size=proc.world_size, generator=generator
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            generator=generator,
            collate_fn=collate_fn,
            num_workers=cfg.train.num_workers,
        )
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size if training else 1,
        shuffle=training,
        drop_last=False,
        generator=generator,
        collate_fn=collate_fn,
        num_workers=cfg.train.num_workers,
    )


def data_paths(cfg: Config) -> list[tuple[str, Path, str]]:
    """(key, path as configured, what it is) of every data path of a config; a ``{subset}`` source once per
    subset the config names."""
    d = cfg.dataset
    out = [("dataset.annotation_file", d.annotation_file, "annotation file")]
    subsets = dict.fromkeys(s for s in (d.train_subset, d.val_subset, d.test_subset) if s)
    for source in d.feat_sources:
        kind = "feature file" if source.suffix.lower() in HDF5_SUFFIXES else "feature folder"
        for subset in subsets if "{subset}" in str(source) else [""]:
            out.append(("dataset.feat_dir", Path(str(source).replace("{subset}", subset)), kind))
    if d.fusion is not None:
        out.append(("dataset.fusion.score_file", d.fusion.score_file, "class score file"))
    return out


def relative_note(cfg: Config, base: Path | None = None) -> str:
    """What the config's relative data paths were resolved against, for messages about missing files ("" when
    every path is absolute)."""
    relative = sorted({f"{key} {str(path)!r}" for key, path, _ in data_paths(cfg) if not path.is_absolute()})
    if not relative:
        return ""
    return (
        f"relative paths of the config ({', '.join(relative)}) resolve against the current directory "
        f"{(base or Path.cwd()).resolve()}"
    )


def check_data_paths(cfg: Config, config_file: str | os.PathLike | None = None, base: Path | None = None) -> None:
    """Raise one :class:`DataError` naming every data path of ``cfg`` that does not exist (a missing feature
    folder once, not once per video); a relative one says what it was relative to (``base``, default the
    current directory), and whether it exists beside ``config_file`` instead."""
    base = (base or Path.cwd()).resolve()
    missing = []
    for key, path, kind in data_paths(cfg):
        full = base / path
        if full.exists():
            continue
        line = f"{kind} {full} does not exist ({key}"
        if path.is_absolute():
            line += ")"
        else:
            line += f" {str(path)!r}, relative to the current directory {base})"
            if config_file is not None and (Path(config_file).resolve().parent / path).exists():
                line += (
                    f"; it exists relative to the config's folder {Path(config_file).resolve().parent}: run "
                    "cltdr from there or make the path absolute"
                )
        missing.append(line)
    if missing:
        raise DataError("\n  ".join(["the data the config names is missing:", *missing]))


def resolve_paths(cfg: Config, base: Path | None = None) -> Config:
    """A copy with absolute data paths and the class list filled in, as saved into a run directory."""
    base = base or Path.cwd()
    data = cfg.model_dump()
    d = data["dataset"]
    d["annotation_file"] = (base / d["annotation_file"]).resolve()
    feat_dir = [(base / p).resolve() for p in cfg.dataset.feat_sources]
    d["feat_dir"] = feat_dir if isinstance(cfg.dataset.feat_dir, list) else feat_dir[0]
    if d["fusion"] is not None:
        d["fusion"]["score_file"] = (base / d["fusion"]["score_file"]).resolve()
    d["class_names"] = class_names(cfg)
    return Config.model_validate(data)
