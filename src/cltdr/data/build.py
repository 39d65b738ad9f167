"""From a config to annotation sets, datasets and loaders (the config translation lives here, not in them)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import Config
from .annotations import AnnotationSet, load_annotations, read_class_names
from .dataset import TALDataset, make_collate
from .features import feature_path, load_features


def class_names(cfg: Config) -> list[str]:
    return list(cfg.dataset.class_names) if cfg.dataset.class_names else read_class_names(cfg.dataset.annotation_file)


def load_split(cfg: Config, subset: str) -> AnnotationSet:
    d = cfg.dataset
    return load_annotations(d.annotation_file, subsets=[subset], class_names=class_names(cfg),
                            default_fps=d.default_fps, segment_policy=d.segment_policy)


def pyramid_name(cfg: Config) -> str:
    """What needs a video of at least ``cfg.divisor`` steps, as quoted in a too-short-video error."""
    return f"the {cfg.model.num_levels}-level pyramid (coarsest stride {cfg.divisor})"


def make_dataset(cfg: Config, split: AnnotationSet, training: bool) -> TALDataset:
    d = cfg.dataset
    return TALDataset(
        split.videos, feat_dir=d.feat_dir, prefix=d.feat_prefix, ext=d.feat_ext, input_dim=d.input_dim,
        feat_stride=d.feat_stride, num_frames=d.num_frames, training=training, max_seq_len=d.max_seq_len,
        crop_ratio=d.crop_ratio if training else None, trunc_thresh=d.trunc_thresh,
        noise_std=d.noise_std if training else 0.0, min_length=cfg.divisor,
        min_length_reason=pyramid_name(cfg),
        seed=cfg.train.seed,
    )


def check_features(dataset: TALDataset) -> None:
    """Load and validate every feature file of ``dataset`` once (path, shape, channels, values, length), so that
    a bad file stops a run before its first epoch rather than in the middle of one."""
    for rec in dataset.videos:
        path = feature_path(dataset.feat_dir, rec.video_id, dataset.prefix, dataset.ext)
        load_features(path, video_id=rec.video_id, input_dim=dataset.input_dim, min_length=dataset.min_length,
                      min_length_reason=dataset.min_length_reason)


def make_loader(cfg: Config, dataset: TALDataset, training: bool, epoch: int = 0) -> DataLoader:
    """Training loaders shuffle with a generator seeded by (seed, epoch), so a resumed epoch replays exactly."""
    generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
    dataset.set_epoch(epoch)
    return DataLoader(
        dataset, batch_size=cfg.train.batch_size if training else 1, shuffle=training, drop_last=False,
        generator=generator, collate_fn=make_collate(cfg.divisor), num_workers=cfg.train.num_workers,
    )


def resolve_paths(cfg: Config, base: Path | None = None) -> Config:
    """A copy with absolute data paths and the class list filled in, as saved into a run directory."""
    base = base or Path.cwd()
    data = cfg.model_dump()
    for key in ("annotation_file", "feat_dir"):
        data["dataset"][key] = (base / data["dataset"][key]).resolve()
    data["dataset"]["class_names"] = class_names(cfg)
    return Config.model_validate(data)
