"""The feature card: ``<feature folder>/feature_card.json``, how every feature file in that folder was made.

    {"format": "cltdr-feature-card-v1", "backbone": "r3d_18",
     "weights": {"kind": "pretrained", "source": "R3D_18_Weights.KINETICS400_V1", "sha256": "...", "seed": null},
     "fps": 30.0, "num_frames": 16, "stride": 4, "dim": 512, "frame_size": [112, 112],
     "preprocessing": {"resize": [128, 171], "crop": [112, 112], "mean": [...], "std": [...], ...},
     "layout": "TC", "ext": ".npy", "dtype": "float32", "cltdr_version": "0.3.0", "torch_version": "2.13.0"}

``cltdr extract`` writes it before the first feature file and refuses to add features made otherwise to a folder
that has one. A config whose ``dataset.feat_dir`` holds a card takes ``input_dim``, ``feat_stride``,
``num_frames`` and ``feat_fps`` from it (:func:`fill_config`; a value the config sets must agree); training
copies it into the run directory (``RUN/feature_card.json``), and a detector refuses features, or a card,
whose backbone, weights, dimension, frame rate, clip length or stride differ from the run's (:func:`check_same`,
naming both cards). The weights' SHA-256 says which weights made the features; for ``--weights random`` it is
the hash of the initial parameters, so detection can rebuild the same network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cltdr.errors import ConfigError, DataError
from cltdr.utils.io import atomic_write_json, read_json

CARD_NAME = "feature_card.json"
CARD_FORMAT: Literal["cltdr-feature-card-v1"] = "cltdr-feature-card-v1"
# What makes features interchangeable for a detector (issue 10: dimension, backbone, stride; and what else
# changes the features' meaning or grid). Extraction into a folder compares everything but the versions.
DETECTOR_KEYS = ("backbone", "weights.sha256", "dim", "fps", "num_frames", "stride")
EXTRACTION_KEYS = DETECTOR_KEYS + ("weights.kind", "frame_size", "preprocessing", "layout", "ext", "dtype")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardWeights(_Strict):
    kind: Literal["random", "file", "pretrained", "directory"]
    source: Optional[str] = Field(description="File or directory (absolute), torchvision weights name, or null")
    sha256: str = Field(description="Of the weights file (directory: its files); random: of the parameters")
    seed: Optional[int] = Field(None, description="Seed of random weights")


class FeatureCard(_Strict):
    """One folder's extraction settings (every field is written by ``cltdr extract``)."""

    format: Literal["cltdr-feature-card-v1"] = CARD_FORMAT
    backbone: str
    weights: CardWeights
    fps: float = Field(gt=0, description="Frames per second the video was resampled to")
    num_frames: int = Field(ge=1, description="Frames per clip (per feature)")
    stride: int = Field(ge=1, description="Frames between the first frames of consecutive clips")
    dim: int = Field(ge=1, description="Feature channels C")
    frame_size: tuple[int, int] = Field(description="(h, w) of a frame as the network sees it")
    preprocessing: dict[str, Any]
    layout: Literal["TC"] = "TC"
    ext: Literal[".npy"] = ".npy"
    dtype: Literal["float32"] = "float32"
    cltdr_version: str
    torch_version: str

    def value(self, dotted: str) -> Any:
        node: Any = self.model_dump(mode="json")
        for part in dotted.split("."):
            node = node[part]
        return node

    def differences(self, other: FeatureCard, keys: tuple[str, ...] = DETECTOR_KEYS) -> list[str]:
        """The keys (dotted) of ``keys`` where the two cards differ."""
        return [k for k in keys if self.value(k) != other.value(k)]

    def describe(self) -> str:
        return (
            f"{self.backbone} ({self.weights.kind} weights), {self.dim} channels, {self.fps:g} fps, "
            f"{self.num_frames} frames every {self.stride}"
        )


def card_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / CARD_NAME


def read_card(path: str | os.PathLike) -> FeatureCard:
    """The card in ``path``; a :class:`DataError` naming the file and the key when it is not one."""
    data = read_json(path, "feature card")
    try:
        return FeatureCard.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"key '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in err.errors())
        raise DataError(f"feature card {path} is not valid: {problems}") from None


def find_card(folder: str | os.PathLike) -> Optional[FeatureCard]:
    """The card of a feature folder, or None when it has none."""
    path = card_path(folder)
    return read_card(path) if path.is_file() else None


def write_card(folder: str | os.PathLike, card: FeatureCard) -> Path:
    return atomic_write_json(card_path(folder), card.model_dump(mode="json"))


def check_same(
    a: FeatureCard, where_a: str, b: FeatureCard, where_b: str, *, keys: tuple[str, ...] = DETECTOR_KEYS, hint: str
) -> None:
    """Raise a :class:`DataError` listing every key of ``keys`` where cards ``a`` and ``b`` differ, with both
    values and where each card comes from; ``hint`` says what to do."""
    diffs = a.differences(b, keys)
    if diffs:
        lines = "\n".join(f"  {k}: {where_a} has {a.value(k)!r}, {where_b} has {b.value(k)!r}" for k in diffs)
        raise DataError(f"features made otherwise: {where_a} and {where_b} differ in\n{lines}\n{hint}")


# Config keys the card fills: dataset key -> card key.
CONFIG_KEYS = {"input_dim": "dim", "feat_stride": "stride", "num_frames": "num_frames", "feat_fps": "fps"}


def config_card(cfg: Any) -> tuple[Optional[FeatureCard], Optional[Path]]:
    """The card of the config's feature folder (one folder, not HDF5), and its path; (None, None) if none."""
    sources = cfg.dataset.feat_sources
    if len(sources) != 1 or "{subset}" in str(sources[0]) or not card_path(sources[0]).is_file():
        return None, None
    return read_card(card_path(sources[0])), card_path(sources[0])


def fill_config(cfg: Any, source: str) -> Any:
    """``cfg`` with ``dataset.input_dim``, ``feat_stride``, ``num_frames`` and ``feat_fps`` from the card of its
    feature folder (unchanged when it has none). A key the config (file ``source``) sets itself must agree."""
    card, path = config_card(cfg)
    if card is None:
        return cfg
    d = cfg.dataset
    for key, card_key in CONFIG_KEYS.items():
        value = getattr(card, card_key)
        if key in d.model_fields_set and getattr(d, key) is not None and float(getattr(d, key)) != float(value):
            raise ConfigError(
                f"dataset.{key} is {getattr(d, key)!r} in {source}, but the features' card {path} says "
                f"{card_key} {value!r} ({card.describe()}): leave dataset.{key} out (the card fills it) or point "
                "dataset.feat_dir at features extracted with that setting"
            )
        setattr(d, key, value)
    return cfg
